"""The Merkle log on PostgreSQL: the ``merkle`` table, integrated from the recorded events.

Rules this module keeps:

- **Integrated after recording, like a transparency log's sequencer and integrator**: the
  events are chained in their own transaction (``chain_postgres``), which fixes their order;
  :func:`integrate` then appends every recorded event after the tree's last leaf, in that
  order, in one transaction of its own. The relay integrates each batch it has published,
  and anything that needs the tree (a checkpoint, a proof, an audit) integrates first, so the
  tree is never behind what is asked of it and recording pays nothing for it.
- **One integrator at a time**: a transaction-scoped advisory lock serialises them, so two
  never append the same leaf. Notification ids are assigned under the event table's lock and
  so commit in order: reading the events after the last leaf never skips one that commits
  later.
- **One row per stored node** ``(level, idx, hash)``; leaf rows (level 0) also carry the
  event's ``sequence``, so an event's leaf index is one index lookup away.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import Cursor
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from ledger.storage import merkle
from ledger.storage.chain import Row

CREATE = [
    "CREATE TABLE IF NOT EXISTS {schema}.merkle ("
    " level smallint NOT NULL,"
    " idx bigint NOT NULL,"
    " hash bytea NOT NULL,"
    " sequence bigint,"
    " PRIMARY KEY (level, idx))",
    "CREATE UNIQUE INDEX IF NOT EXISTS merkle_leaf_by_sequence ON {schema}.merkle (sequence) "
    "WHERE sequence IS NOT NULL",
]
_INSERT = (
    "INSERT INTO {schema}.merkle (level, idx, hash, sequence) "
    "SELECT * FROM unnest(%b::smallint[], %b::bigint[], %b::bytea[], %b::bigint[])"
)
_BATCH = 5_000  # events appended per statement
_MAX_ID = 2**63 - 1
# The reads proofs need, also sent by the API's asynchronous connections.
SIZE = "SELECT idx FROM {schema}.merkle WHERE level = 0 ORDER BY idx DESC LIMIT 1"
SIZE_AT = "SELECT idx FROM {schema}.merkle WHERE sequence <= %s ORDER BY sequence DESC LIMIT 1"
LEAF_INDEX = "SELECT idx FROM {schema}.merkle WHERE sequence = %s"
NODES = (
    "SELECT m.level, m.idx, m.hash FROM {schema}.merkle m "
    "JOIN unnest(%s::smallint[], %s::bigint[]) AS k(level, idx) "
    "ON m.level = k.level AND m.idx = k.idx"
)


def _sql(text: str, schema: Identifier, events: Identifier | None = None) -> Composed:
    return SQL(text).format(schema=schema, events=events or Identifier("unused"))


def create_statements(schema: Identifier) -> list[Composed]:
    return [_sql(text, schema) for text in CREATE]


def _one(curs: Cursor[Any], query: Composed, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row, or None, whatever rows ``curs`` makes."""
    with curs.connection.cursor(row_factory=tuple_row) as tuples:
        tuples.execute(query, params)
        row = tuples.fetchone()
    return None if row is None else row[0]


def size(curs: Cursor[Any], schema: Identifier) -> int:
    last = _one(curs, _sql(SIZE, schema))
    return 0 if last is None else int(last) + 1


def nodes(
    curs: Cursor[Any], schema: Identifier, keys: Iterable[merkle.Key]
) -> dict[merkle.Key, bytes]:
    wanted = sorted(keys)
    if not wanted:
        return {}
    with curs.connection.cursor(row_factory=tuple_row, binary=True) as tuples:
        return _nodes(tuples, schema, wanted)


def _nodes(
    curs: Cursor[Any], schema: Identifier, wanted: list[merkle.Key]
) -> dict[merkle.Key, bytes]:
    curs.execute(_sql(NODES, schema), node_params(wanted))
    return {(int(level), int(idx)): bytes(digest) for level, idx, digest in curs.fetchall()}


def append_rows(curs: Cursor[Any], schema: Identifier, rows: Sequence[Row]) -> int:
    """Adds the events (as :data:`Row` tuples, in id order) as the next leaves; must run under
    the event table lock, in the transaction that inserted them. Returns the new size."""
    start = size(curs, schema)
    frontier_map = nodes(curs, schema, merkle.frontier_keys(start))
    frontier = [frontier_map[k] for k in merkle.frontier_keys(start)]
    made = merkle.append(start, frontier, (merkle.leaf_hash(merkle.leaf(*r)) for r in rows))
    sequences = iter(r[0] for r in rows)
    columns: tuple[list[int], list[int], list[bytes], list[int | None]] = ([], [], [], [])
    for node in made:
        columns[0].append(node.level)
        columns[1].append(node.index)
        columns[2].append(node.hash)
        columns[3].append(next(sequences) if node.level == 0 else None)
    curs.execute(_sql(_INSERT, schema), list(columns))
    return start + len(rows)


def level(
    curs: Cursor[Any], schema: Identifier, level: int, start: int, limit: int
) -> list[tuple[int, bytes]]:
    with curs.connection.cursor(row_factory=tuple_row, binary=True) as tuples:
        tuples.execute(
            _sql(
                "SELECT idx, hash FROM {schema}.merkle WHERE level = %s AND idx >= %s "
                "ORDER BY idx LIMIT %s",
                schema,
            ),
            [level, start, limit],
        )
        return [(int(i), bytes(h)) for i, h in tuples.fetchall()]


def node_params(keys: Iterable[merkle.Key]) -> list[list[int]]:
    wanted = sorted(keys)
    return [[k[0] for k in wanted], [k[1] for k in wanted]]


def leaf_index(curs: Cursor[Any], schema: Identifier, sequence: int) -> int | None:
    found = _one(curs, _sql(LEAF_INDEX, schema), [sequence])
    return None if found is None else int(found)


def leaf_sequence(curs: Cursor[Any], schema: Identifier, index: int) -> int | None:
    query = _sql("SELECT sequence FROM {schema}.merkle WHERE level = 0 AND idx = %s", schema)
    found = _one(curs, query, [index])
    return None if found is None else int(found)


def size_at(curs: Cursor[Any], schema: Identifier, sequence: int) -> int:
    """How many leaves the events up to ``sequence`` (inclusive) make."""
    found = _one(curs, _sql(SIZE_AT, schema), [sequence])
    return 0 if found is None else int(found) + 1


def _last_sequence(curs: Cursor[Any], schema: Identifier) -> int:
    query = _sql("SELECT max(sequence) FROM {schema}.merkle WHERE sequence IS NOT NULL", schema)
    return int(_one(curs, query) or 0)


def integrate(
    curs: Cursor[Any], schema: Identifier, events: Identifier, upto: int | None = None
) -> int:
    """Appends every recorded event after the tree's last leaf (up to notification id
    ``upto``), in id order, in the caller's transaction; returns the tree's size. A ledger
    recorded before the Merkle log existed is integrated from its first event the same way."""
    curs.execute(
        "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"ledger-merkle:{schema.as_string()}"]
    )
    after = _last_sequence(curs, schema)
    query = _sql(
        "SELECT notification_id, originator_id::text, originator_version, topic, state "
        "FROM {schema}.{events} WHERE notification_id > %s AND notification_id <= %s "
        "ORDER BY notification_id LIMIT %s",
        schema,
        events,
    )
    stop = _MAX_ID if upto is None else upto
    while True:
        with curs.connection.cursor(row_factory=tuple_row, binary=True) as tuples:
            tuples.execute(query, [after, stop, _BATCH])
            rows: list[Row] = tuples.fetchall()
        if not rows:
            return size(curs, schema)
        append_rows(curs, schema, rows)
        after = rows[-1][0]
