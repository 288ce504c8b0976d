"""The one-year records: every disclosure to a third party and every collection of data.

Tables (schema ``<ledger>_records``), one row per recorded event:

- ``disclosures``: recipient, purpose, data categories, legal basis, the producer's
  reference, when it happened (``disclosed_at``), and the sealed note.
- ``collections``: purpose, data categories, source, when, and the sealed description.

A rectification (``PersonalDataRectified``) of a collection's description or a disclosure's
note puts the new sealed value in the entry's row; the consent view records when and by whom.

**Retention.** An entry is kept for a configurable horizon (default one year) from the date
it was *last used* (the privacy statements' wording): ``last_used_at`` starts at the event's
own time and moves forward whenever a later collection or disclosure of the same subject
touches any of the entry's data categories — unless the entry had already outlived its
horizon by then, since a purged entry cannot be revived. Expired entries are never returned
and :meth:`RecordsView.maintain` deletes them. The rule depends only on event times, so a
rebuild ends with the same rows as the live view. The ledger's own events are never purged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from ledger.domain.subject import Subject
from projections.view import Handler, View, sealed_bytes


class RecordsView(View):
    name = "records"
    ddl = """
CREATE TABLE IF NOT EXISTS {schema}.disclosures (
    tenant text NOT NULL,
    event_id text NOT NULL,
    subject_id uuid NOT NULL,
    recipient text NOT NULL,
    purpose text NOT NULL,
    categories text[] NOT NULL,
    legal_basis text NOT NULL,
    reference text NOT NULL,
    disclosed_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL,
    note bytea,
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX IF NOT EXISTS disclosures_by_subject
    ON {schema}.disclosures (subject_id, disclosed_at);
CREATE INDEX IF NOT EXISTS disclosures_by_time
    ON {schema}.disclosures (tenant, disclosed_at, event_id);
CREATE INDEX IF NOT EXISTS disclosures_by_use ON {schema}.disclosures (last_used_at);
CREATE TABLE IF NOT EXISTS {schema}.collections (
    tenant text NOT NULL,
    event_id text NOT NULL,
    subject_id uuid NOT NULL,
    purpose text NOT NULL,
    categories text[] NOT NULL,
    source text NOT NULL,
    collected_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL,
    description bytea,
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX IF NOT EXISTS collections_by_subject
    ON {schema}.collections (subject_id, collected_at);
CREATE INDEX IF NOT EXISTS collections_by_use ON {schema}.collections (last_used_at)
"""

    def event_handlers(self) -> dict[type, Handler]:
        return {}  # a batch is folded (``apply``), not applied event by event

    @property
    def horizons(self) -> dict[str, timedelta]:
        return {
            "disclosures": self.settings.retention_disclosures,
            "collections": self.settings.retention_collections,
        }

    def apply(self, curs: Cursor[DictRow], events: Sequence[Any]) -> None:
        """Folds a batch into the tables in four statements, however many events it holds.

        The entries the batch could touch — its subjects' entries still inside their horizon
        at the batch's earliest event — are read once; each collection or disclosure is then
        applied in ledger order in memory (:class:`RetentionFold`: the retention rule, then
        the new entry); the new entries are inserted and the moved clocks updated, one
        statement per table. Per event this used to cost three statements. A rectification
        (rare) is one statement of its own, after the fold."""
        uses = [e for e in events if isinstance(e, _USES)]
        if uses:
            self._fold(curs, uses)
        for e in events:  # after the fold: a correction may follow its entry in the batch
            if type(e) is Subject.PersonalDataRectified and e.field in _CORRECTED:
                table, column = _CORRECTED[e.field]
                curs.execute(
                    self.sql(
                        f"UPDATE {{schema}}.{table} SET {column} = %s "
                        "WHERE tenant = %s AND event_id = %s"
                    ),
                    [sealed_bytes(e.value), e.tenant, e.corrects_event_id],
                )

    def _fold(self, curs: Cursor[DictRow], uses: Sequence[Any]) -> None:
        fold = RetentionFold(self.horizons)
        fold.load(self._entries_in_reach(curs, uses))
        for e in uses:
            fold.use(e)
        for table, entries in fold.new_entries().items():
            if entries:
                curs.execute(self.sql(_INSERT[table], table=table), _columns(entries))
        for table, moved in fold.moved().items():
            if moved:
                curs.execute(
                    self.sql(
                        "UPDATE {schema}.{table} AS t SET last_used_at = m.at "
                        "FROM unnest(%b::text[], %b::text[], %b::timestamptz[]) "
                        "AS m(tenant, event_id, at) "
                        "WHERE t.tenant = m.tenant AND t.event_id = m.event_id",
                        table=table,
                    ),
                    _columns(moved),
                )

    def _entries_in_reach(self, curs: Cursor[DictRow], uses: Sequence[Any]) -> list[Entry]:
        earliest = min(e.occurred_at for e in uses)
        subjects = list({e.originator_id for e in uses})
        entries: list[Entry] = []
        for table, horizon in self.horizons.items():
            curs.execute(
                self.sql(
                    "SELECT tenant, event_id, subject_id, categories, last_used_at "
                    "FROM {schema}.{table} "
                    "WHERE subject_id = ANY(%b::uuid[]) AND last_used_at >= %s",
                    table=table,
                ),
                [subjects, earliest - horizon],
            )
            entries += [
                Entry(
                    table,
                    r["tenant"],
                    r["event_id"],
                    r["subject_id"],
                    r["categories"],
                    r["last_used_at"],
                )
                for r in curs.fetchall()
            ]
        return entries

    def maintain(self, now: datetime | None = None) -> int:
        """The retention sweep: deletes entries whose horizon had passed by ``now``."""
        removed = 0
        with self.datastore.transaction(commit=True) as curs:
            for table, horizon in self.horizons.items():
                curs.execute(
                    self.sql(
                        "DELETE FROM {schema}.{table} "
                        "WHERE last_used_at < coalesce(%s::timestamptz, now()) - %s",
                        table=table,
                    ),
                    [now, horizon],
                )
                removed += curs.rowcount
        return removed


_USES = (Subject.DataDisclosed, Subject.PersonalDataCollected)
# Fields a rectification may correct that an entry shows: its table and column (a fixed set,
# so the names can be part of the statement).
_CORRECTED = {"description": ("collections", "description"), "note": ("disclosures", "note")}
_TABLE = {Subject.DataDisclosed: "disclosures", Subject.PersonalDataCollected: "collections"}
_INSERT = {  # categories travel as JSON: unnest cannot carry an array of arrays
    "disclosures": (
        "INSERT INTO {schema}.{table} (tenant, event_id, subject_id, recipient, purpose, "
        "categories, legal_basis, reference, disclosed_at, recorded_at, last_used_at, note) "
        "SELECT tenant, event_id, subject_id, recipient, purpose, "
        "ARRAY(SELECT jsonb_array_elements_text(categories)), legal_basis, reference, at, "
        "recorded_at, last_used_at, sealed "
        "FROM unnest(%b::text[], %b::text[], %b::uuid[], %b::text[], %b::text[], %b::jsonb[], "
        "%b::text[], %b::text[], %b::timestamptz[], %b::timestamptz[], %b::timestamptz[], "
        "%b::bytea[]) AS n(tenant, event_id, subject_id, recipient, purpose, categories, "
        "legal_basis, reference, at, recorded_at, last_used_at, sealed) "
        "ON CONFLICT (tenant, event_id) DO NOTHING"
    ),
    "collections": (
        "INSERT INTO {schema}.{table} (tenant, event_id, subject_id, purpose, categories, "
        "source, collected_at, recorded_at, last_used_at, description) "
        "SELECT tenant, event_id, subject_id, purpose, "
        "ARRAY(SELECT jsonb_array_elements_text(categories)), source, at, recorded_at, "
        "last_used_at, sealed "
        "FROM unnest(%b::text[], %b::text[], %b::uuid[], %b::text[], %b::jsonb[], %b::text[], "
        "%b::timestamptz[], %b::timestamptz[], %b::timestamptz[], %b::bytea[]) "
        "AS n(tenant, event_id, subject_id, purpose, categories, source, at, recorded_at, "
        "last_used_at, sealed) "
        "ON CONFLICT (tenant, event_id) DO NOTHING"
    ),
}


@dataclass
class Entry:
    """A record entry as the retention rule sees it: where it is, whose, which categories,
    and when it was last used."""

    table: str
    tenant: str
    event_id: str
    subject_id: UUID
    categories: list[str]
    last_used_at: datetime
    event: Any = None  # the event that creates it, for an entry new in this batch


class RetentionFold:
    """The retention rule over a batch, in memory (see the module's docstring).

    A use at ``at`` (a collection or disclosure of a subject) moves ``last_used_at`` of every
    earlier entry of that subject that shares a category with it, is still inside its
    horizon (``last_used_at >= at - horizon``) and was last used before ``at``; then the
    event's own entry is added, last used at its own time. Entries are those :meth:`load`
    was given (from the tables) and those the batch adds, so a use reaches both.
    """

    def __init__(self, horizons: dict[str, timedelta]) -> None:
        self.horizons = horizons
        self._by_subject: dict[UUID, list[Entry]] = defaultdict(list)
        self._keys: set[tuple[str, str, str]] = set()
        self._moved: dict[tuple[str, str, str], Entry] = {}
        self._new: list[Entry] = []

    def load(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            self._by_subject[entry.subject_id].append(entry)
            self._keys.add((entry.table, entry.tenant, entry.event_id))

    def use(self, e: Any) -> None:
        at: datetime = e.occurred_at
        categories = set(e.categories)
        for entry in self._by_subject[e.originator_id]:
            if (
                entry.last_used_at < at
                and entry.last_used_at >= at - self.horizons[entry.table]
                and not categories.isdisjoint(entry.categories)
            ):
                entry.last_used_at = at
                if entry.event is None:
                    self._moved[(entry.table, entry.tenant, entry.event_id)] = entry
        table = _TABLE[type(e)]
        key = (table, e.tenant, e.event_id)
        if key in self._keys:  # recorded already: as ON CONFLICT DO NOTHING would
            return
        entry = Entry(table, e.tenant, e.event_id, e.originator_id, list(e.categories), at, e)
        self._keys.add(key)
        self._by_subject[e.originator_id].append(entry)
        self._new.append(entry)

    def new_entries(self) -> dict[str, list[tuple[object, ...]]]:
        """Rows to insert per table, with their final ``last_used_at``."""
        rows: dict[str, list[tuple[object, ...]]] = {"disclosures": [], "collections": []}
        for entry in self._new:
            e = entry.event
            common = (e.tenant, e.event_id, e.originator_id)
            if entry.table == "disclosures":
                rows["disclosures"].append(
                    (
                        *common,
                        e.recipient,
                        e.purpose,
                        Jsonb(list(e.categories)),
                        e.legal_basis.value,
                        e.reference,
                        e.occurred_at,
                        e.timestamp,
                        entry.last_used_at,
                        sealed_bytes(e.note),
                    )
                )
            else:
                rows["collections"].append(
                    (
                        *common,
                        e.purpose,
                        Jsonb(list(e.categories)),
                        e.source,
                        e.occurred_at,
                        e.timestamp,
                        entry.last_used_at,
                        sealed_bytes(e.description),
                    )
                )
        return rows

    def moved(self) -> dict[str, list[tuple[object, ...]]]:
        """Entries already in the tables whose clock moved: (tenant, event_id, last used)."""
        rows: dict[str, list[tuple[object, ...]]] = {"disclosures": [], "collections": []}
        for (table, tenant, event_id), entry in self._moved.items():
            rows[table].append((tenant, event_id, entry.last_used_at))
        return rows


def _columns(rows: Sequence[tuple[object, ...]]) -> list[list[object]]:
    return [list(column) for column in zip(*rows, strict=True)]
