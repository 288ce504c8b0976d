"""The chain on PostgreSQL: the ``chain`` table, written in the events' own transaction.

Rules this module keeps:

- **Chained in the insert transaction.** :func:`append` runs after the events are inserted
  and their notification ids are known, inside the transaction that holds `eventsourcing`'s
  ``EXCLUSIVE`` lock on the event table. That lock serialises every writer of events, so the
  head read here is the true predecessor and ids follow commit order: no event is ever
  recorded unchained, and none can be changed between recording and chaining.
- **One row per event**, keyed by its notification id: ``(notification_id, previous, hash)``.
- **Events recorded before the chain existed** are chained once, in id order, by
  :func:`chain_unchained` (run when the tables are created), under the same lock.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from ledger.storage.chain import Link, Stored, extend, stored

CREATE = (
    "CREATE TABLE IF NOT EXISTS {schema}.chain ("
    " notification_id bigint PRIMARY KEY,"
    " previous bigint NOT NULL,"
    " hash bytea NOT NULL)"
)
_HEAD = (
    "SELECT notification_id, previous, hash FROM {schema}.chain "
    "ORDER BY notification_id DESC LIMIT 1"
)
_INSERT = (  # one statement per batch, however many links
    "INSERT INTO {schema}.chain (notification_id, previous, hash) "
    "SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::bytea[])"
)
_BACKFILL_BATCH = 5_000


def _sql(text: str, schema: Identifier, events: Identifier | None = None) -> Composed:
    return SQL(text).format(schema=schema, events=events or Identifier("unused"))


def create_statements(schema: Identifier) -> list[Composed]:
    return [_sql(CREATE, schema)]


def head(curs: Cursor[DictRow], schema: Identifier) -> Link | None:
    curs.execute(_sql(_HEAD, schema))
    row = curs.fetchone()
    if row is None:
        return None
    return Link(row["notification_id"], row["previous"], bytes(row["hash"]))


def append(
    curs: Cursor[DictRow],
    schema: Identifier,
    events: Sequence[StoredEvent],
    ids: Sequence[int],
) -> list[Link]:
    """Chains just-inserted events (``ids[i]`` is the id of ``events[i]``). Must run in the
    transaction that inserted them, after the event table lock was taken."""
    if len(ids) != len(events):
        raise ValueError(f"{len(ids)} notification ids for {len(events)} events")
    batch = [
        stored(i, e.originator_id, e.originator_version, e.topic, e.state)
        for e, i in zip(events, ids, strict=True)
    ]
    links = extend(head(curs, schema), batch)
    _insert(curs, schema, links)
    return links


def _insert(curs: Cursor[DictRow], schema: Identifier, links: Sequence[Link]) -> None:
    columns = [[k.sequence for k in links], [k.previous for k in links], [k.hash for k in links]]
    curs.execute(_sql(_INSERT, schema), columns)


def select_links(
    curs: Cursor[Any], schema: Identifier, start: int, limit: int, stop: int
) -> list[Link]:
    """Links from ``start`` to ``stop``, read with a cursor whose rows are tuples."""
    curs.execute(
        _sql(
            "SELECT notification_id, previous, hash FROM {schema}.chain "
            "WHERE notification_id >= %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s",
            schema,
        ),
        [start, stop, limit],
    )
    return list(map(Link._make, curs.fetchall()))  # binary bytea: already bytes


def _unchained(
    curs: Cursor[DictRow], schema: Identifier, events: Identifier, after: int
) -> Iterator[list[Stored]]:
    while True:
        curs.execute(
            _sql(
                "SELECT notification_id, originator_id, originator_version, topic, state "
                "FROM {schema}.{events} WHERE notification_id > %s "
                "ORDER BY notification_id LIMIT %s",
                schema,
                events,
            ),
            [after, _BACKFILL_BATCH],
        )
        rows = curs.fetchall()
        if not rows:
            return
        yield [
            stored(
                r["notification_id"],
                r["originator_id"],
                r["originator_version"],
                r["topic"],
                r["state"],
            )
            for r in rows
        ]
        after = rows[-1]["notification_id"]


def chain_unchained(curs: Cursor[DictRow], schema: Identifier, events: Identifier) -> int:
    """Chains every event after the chain's head (events recorded before this table existed);
    returns how many. Takes the event table lock, so no writer interleaves."""
    curs.execute(_sql("LOCK TABLE {schema}.{events} IN EXCLUSIVE MODE", schema, events))
    last = head(curs, schema)
    count = 0
    for batch in _unchained(curs, schema, events, last.sequence if last else 0):
        links = extend(last, batch)
        _insert(curs, schema, links)
        last, count = links[-1], count + len(links)
    return count


def behind(curs: Cursor[DictRow], schema: Identifier, events: Identifier) -> bool:
    """Whether some event is newer than the chain's head (a cheap check, without the lock)."""
    curs.execute(
        _sql(
            "SELECT (SELECT max(notification_id) FROM {schema}.{events}) > "
            "coalesce((SELECT max(notification_id) FROM {schema}.chain), 0) AS behind",
            schema,
            events,
        )
    )
    row = curs.fetchone()
    return bool(row and row["behind"])
