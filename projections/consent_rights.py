"""The consent view's fold of rectifications (art. 16), restrictions (art. 18) and objections
(art. 21).

Mixed into :class:`projections.consent.ConsentView`, whose docstring describes the
``restrictions`` and ``objections`` tables. Every change moves the subject row's position, so
the purpose check's memory drops what it knew of the subject.
"""

from __future__ import annotations

from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow

from projections.view import sealed_bytes


class RightsFold:
    """Handlers for ``ProcessingRestricted``, ``RestrictionLifted``, ``ObjectionRaised`` and
    ``CompellingGroundsRecorded``; the view supplies ``sql`` and ``batch_position``."""

    batch_position: int

    def sql(self, text: str, **tables: str) -> bytes:
        raise NotImplementedError  # the view's

    def processing_restricted(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "INSERT INTO {schema}.restrictions (subject_id, restriction_reference, tenant, "
                "grounds, purposes, restricted_at, recorded_at, source, event_id, note) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (subject_id, restriction_reference) DO NOTHING"
            ),
            [
                e.originator_id,
                e.restriction_reference,
                e.tenant,
                e.grounds,
                list(e.purposes),
                e.occurred_at,
                e.timestamp,
                e.source,
                e.event_id,
                sealed_bytes(e.note),
            ],
        )
        self._moved(curs, e)

    def restriction_lifted(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "DELETE FROM {schema}.restrictions "
                "WHERE subject_id = %s AND restriction_reference = %s"
            ),
            [e.originator_id, e.restriction_reference],
        )
        self._moved(curs, e)

    def objection_raised(self, curs: Cursor[DictRow], e: Any) -> None:
        """A new objection replaces the one it follows (answered by grounds, or none)."""
        curs.execute(
            self.sql(
                "INSERT INTO {schema}.objections (subject_id, purpose, tenant, objected_at, "
                "recorded_at, source, event_id, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (subject_id, purpose) DO UPDATE SET "
                "objected_at = EXCLUDED.objected_at, recorded_at = EXCLUDED.recorded_at, "
                "source = EXCLUDED.source, event_id = EXCLUDED.event_id, "
                "reason = EXCLUDED.reason, grounds_event_id = NULL, grounds_reference = NULL, "
                "grounds_at = NULL, reasoning = NULL"
            ),
            [
                e.originator_id,
                e.purpose,
                e.tenant,
                e.occurred_at,
                e.timestamp,
                e.source,
                e.event_id,
                sealed_bytes(e.reason),
            ],
        )
        self._moved(curs, e)

    def compelling_grounds_recorded(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "UPDATE {schema}.objections SET grounds_event_id = %s, grounds_reference = %s, "
                "grounds_at = %s, reasoning = %s WHERE subject_id = %s AND purpose = %s"
            ),
            [
                e.event_id,
                e.grounds_reference,
                e.occurred_at,
                sealed_bytes(e.reasoning),
                e.originator_id,
                e.purpose,
            ],
        )
        self._moved(curs, e)

    def personal_data_rectified(self, curs: Cursor[DictRow], e: Any) -> None:
        """Records the correction, and puts the new value in the consent row that shows the
        corrected event (if it is the row's current one: older grants are history)."""
        curs.execute(
            self.sql(
                "INSERT INTO {schema}.rectifications (event_id, tenant, subject_id, "
                "corrects_event_id, field, rectified_at, recorded_at, producer, source) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (tenant, event_id) DO NOTHING"
            ),
            [
                e.event_id,
                e.tenant,
                e.originator_id,
                e.corrects_event_id,
                e.field,
                e.occurred_at,
                e.timestamp,
                e.producer,
                e.source,
            ],
        )
        column = _CONSENT_FIELDS.get(e.field)
        if column is not None:
            curs.execute(
                self.sql(
                    f"UPDATE {{schema}}.consents SET {column} = %s "
                    "WHERE subject_id = %s AND event_id = %s"
                ),
                [sealed_bytes(e.value), e.originator_id, e.corrects_event_id],
            )

    def _moved(self, curs: Cursor[DictRow], e: Any) -> None:
        """What decides the subject's purpose checks changed: its row's position says so."""
        curs.execute(
            self.sql("UPDATE {schema}.subjects SET position = %s WHERE subject_id = %s"),
            [self.batch_position, e.originator_id],
        )


# Fields a rectification may correct that a consent row shows: the column holding each (a
# fixed set, so the name can be part of the statement).
_CONSENT_FIELDS = {"ip_address": "ip_address", "user_agent": "user_agent", "evidence": "evidence"}
