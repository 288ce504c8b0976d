"""The one-year records: every disclosure to a third party and every collection of data.

Tables (schema ``<ledger>_records``), one row per recorded event:

- ``disclosures``: recipient, purpose, data categories, legal basis, the producer's
  reference, when it happened (``disclosed_at``), and the sealed note.
- ``collections``: purpose, data categories, source, when, and the sealed description.

**Retention.** An entry is kept for a configurable horizon (default one year) from the date
it was *last used* (the privacy statements' wording): ``last_used_at`` starts at the event's
own time and moves forward whenever a later collection or disclosure of the same subject
touches any of the entry's data categories — unless the entry had already outlived its
horizon by then, since a purged entry cannot be revived. Expired entries are never returned
and :meth:`RecordsView.maintain` deletes them. The rule depends only on event times, so a
rebuild ends with the same rows as the live view. The ledger's own events are never purged.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow

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
        return {
            Subject.DataDisclosed: self.data_disclosed,
            Subject.PersonalDataCollected: self.data_collected,
        }

    @property
    def horizons(self) -> dict[str, timedelta]:
        return {
            "disclosures": self.settings.retention_disclosures,
            "collections": self.settings.retention_collections,
        }

    def data_disclosed(self, curs: Cursor[DictRow], e: Any) -> None:
        self._mark_used(curs, e)
        curs.execute(
            self.sql(
                "INSERT INTO {schema}.disclosures (tenant, event_id, subject_id, recipient, "
                "purpose, categories, legal_basis, reference, disclosed_at, recorded_at, "
                "last_used_at, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (tenant, event_id) DO NOTHING"
            ),
            [
                e.tenant,
                e.event_id,
                e.originator_id,
                e.recipient,
                e.purpose,
                e.categories,
                e.legal_basis.value,
                e.reference,
                e.occurred_at,
                e.timestamp,
                e.occurred_at,
                sealed_bytes(e.note),
            ],
        )

    def data_collected(self, curs: Cursor[DictRow], e: Any) -> None:
        self._mark_used(curs, e)
        curs.execute(
            self.sql(
                "INSERT INTO {schema}.collections (tenant, event_id, subject_id, purpose, "
                "categories, source, collected_at, recorded_at, last_used_at, description) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (tenant, event_id) DO NOTHING"
            ),
            [
                e.tenant,
                e.event_id,
                e.originator_id,
                e.purpose,
                e.categories,
                e.source,
                e.occurred_at,
                e.timestamp,
                e.occurred_at,
                sealed_bytes(e.description),
            ],
        )

    def _mark_used(self, curs: Cursor[DictRow], e: Any) -> None:
        """A later use of the subject's data in these categories restarts the retention
        clock of earlier entries that are still within their horizon."""
        for table, horizon in self.horizons.items():
            curs.execute(
                self.sql(
                    "UPDATE {schema}.{table} SET last_used_at = %(at)s "
                    "WHERE subject_id = %(subject)s AND categories && %(categories)s "
                    "AND last_used_at < %(at)s AND last_used_at >= %(at)s - %(horizon)s",
                    table=table,
                ),
                {
                    "at": e.occurred_at,
                    "subject": e.originator_id,
                    "categories": e.categories,
                    "horizon": horizon,
                },
            )

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
