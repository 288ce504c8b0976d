"""Current consent state: per tenant, subject and purpose, granted or withdrawn, and why.

Tables (schema ``<ledger>_consent``):

- ``purposes``: each tenant's purpose catalogue — required or not, legal basis, every consent
  text version, and the event that defined the latest one.
- ``subjects``: each subject's tenant, sealed upstream reference, and erasure request time.
- ``consents``: one row per (subject, purpose) ever granted: ``granted`` or ``withdrawn``,
  the text version agreed to, when it happened upstream and when the ledger recorded it, the
  source, and the id of the event that proves the current state. A purpose with no row was
  never granted. Evidence, IP address and user agent of that event stay sealed.
- ``restrictions``: each restriction of processing in place (art. 18), by subject and the
  tenant's reference: its grounds, the purposes it covers (empty: all), the proving event. A
  lifted restriction's row is deleted.
- ``objections``: each subject's latest objection to a purpose (art. 21), and the compelling
  grounds that answered it, if any. The note, reason and reasoning stay sealed.
- ``consent_days``: per tenant, purpose and day, the consents given and withdrawn, counted as
  changes of state (``projections.consent_days``).
- ``rectifications``: every correction of a personal field (art. 16): which event and field,
  when, by which producer. The corrected value itself replaces the old one in the row that
  shows it (here a consent row's; in the records view a collection's or disclosure's).

Every row carries ``position``: the view position of the batch that last changed it (indexed),
so a reader holding answers as of one position can ask which subjects, and which tenants'
catalogues, changed after it (``projections.api.purpose_cache``). A subject's shredding moves its
row's position too, though nothing else in this view changes then, and so does every change of
its restrictions and objections (their rows need no position of their own).

A withdrawal is visible as soon as its batch commits; the ledger already refused withdrawals
of required consents, so this view never sees one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow

from ledger.domain.subject import Subject
from ledger.domain.tenant import Tenant
from projections import consent_days
from projections.consent_days import DayTally
from projections.consent_rights import RightsFold
from projections.view import Handler, View, sealed_bytes

# The columns of ``consents`` and their types, in the order the fold writes them.
_CONSENT_COLUMNS = {
    "subject_id": "uuid",
    "purpose": "text",
    "tenant": "text",
    "state": "text",
    "consent_text_version": "text",
    "changed_at": "timestamptz",
    "recorded_at": "timestamptz",
    "source": "text",
    "event_id": "text",
    "first_granted_at": "timestamptz",
    "evidence": "bytea",
    "ip_address": "bytea",
    "user_agent": "bytea",
    "position": "bigint",
}


class ConsentView(View, RightsFold):
    name = "consent"
    ddl = (
        """
CREATE TABLE IF NOT EXISTS {schema}.purposes (
    tenant text NOT NULL,
    purpose text NOT NULL,
    required boolean NOT NULL,
    legal_basis text NOT NULL,
    description text NOT NULL,
    current_version text NOT NULL,
    texts jsonb NOT NULL,
    defined_at timestamptz NOT NULL,
    event_id text NOT NULL,
    position bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, purpose)
);
CREATE TABLE IF NOT EXISTS {schema}.subjects (
    subject_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    subject_ref bytea NOT NULL,
    registered_at timestamptz NOT NULL,
    erasure_requested_at timestamptz,
    erasure_event_id text,
    position bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS {schema}.consents (
    subject_id uuid NOT NULL,
    purpose text NOT NULL,
    tenant text NOT NULL,
    state text NOT NULL CHECK (state IN ('granted', 'withdrawn')),
    consent_text_version text NOT NULL,
    changed_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    source text NOT NULL,
    event_id text NOT NULL,
    first_granted_at timestamptz NOT NULL,
    evidence bytea,
    ip_address bytea,
    user_agent bytea,
    position bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (subject_id, purpose)
);
CREATE TABLE IF NOT EXISTS {schema}.restrictions (
    subject_id uuid NOT NULL,
    restriction_reference text NOT NULL,
    tenant text NOT NULL,
    grounds text NOT NULL,
    purposes text[] NOT NULL,
    restricted_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    source text NOT NULL,
    event_id text NOT NULL,
    note bytea,
    PRIMARY KEY (subject_id, restriction_reference)
);
CREATE TABLE IF NOT EXISTS {schema}.objections (
    subject_id uuid NOT NULL,
    purpose text NOT NULL,
    tenant text NOT NULL,
    objected_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    source text NOT NULL,
    event_id text NOT NULL,
    reason bytea,
    grounds_event_id text,
    grounds_reference text,
    grounds_at timestamptz,
    reasoning bytea,
    PRIMARY KEY (subject_id, purpose)
);
CREATE TABLE IF NOT EXISTS {schema}.rectifications (
    event_id text NOT NULL,
    tenant text NOT NULL,
    subject_id uuid NOT NULL,
    corrects_event_id text NOT NULL,
    field text NOT NULL,
    rectified_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    producer text NOT NULL,
    source text NOT NULL,
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX IF NOT EXISTS rectifications_by_subject ON {schema}.rectifications (subject_id);
ALTER TABLE {schema}.purposes ADD COLUMN IF NOT EXISTS direct_marketing boolean NOT NULL
    DEFAULT false;
ALTER TABLE {schema}.purposes ADD COLUMN IF NOT EXISTS allowed_under_restriction boolean
    NOT NULL DEFAULT false;
ALTER TABLE {schema}.purposes ADD COLUMN IF NOT EXISTS position bigint NOT NULL DEFAULT 0;
ALTER TABLE {schema}.subjects ADD COLUMN IF NOT EXISTS position bigint NOT NULL DEFAULT 0;
ALTER TABLE {schema}.consents ADD COLUMN IF NOT EXISTS position bigint NOT NULL DEFAULT 0;
"""
        + consent_days.DDL
    )
    live_ddl = """
CREATE INDEX IF NOT EXISTS purposes_by_position ON {schema}.purposes (position);
CREATE INDEX IF NOT EXISTS subjects_by_position ON {schema}.subjects (position);
CREATE INDEX IF NOT EXISTS consents_by_position ON {schema}.consents (position)
"""

    def event_handlers(self) -> dict[type, Handler]:
        return {
            Tenant.PurposeDefined: self.purpose_defined,
            Subject.Registered: self.subject_registered,
            Subject.ConsentGranted: self.consent_granted,
            Subject.ConsentWithdrawn: self.consent_withdrawn,
            Subject.ErasureRequested: self.erasure_requested,
            Subject.ErasureRefused: self.erasure_refused,
            Subject.KeysShredded: self.keys_shredded,
            Subject.ProcessingRestricted: self.processing_restricted,
            Subject.RestrictionLifted: self.restriction_lifted,
            Subject.ObjectionRaised: self.objection_raised,
            Subject.CompellingGroundsRecorded: self.compelling_grounds_recorded,
            Subject.PersonalDataRectified: self.personal_data_rectified,
        }

    def apply(self, curs: Cursor[DictRow], events: Sequence[Any]) -> None:
        """Folds a batch: one statement for its registrations, one to read and one to write
        the consents it changes (each grant and withdrawal applied in ledger order in
        memory, by the same rules as :meth:`consent_granted` and :meth:`consent_withdrawn`),
        and the rare catalogue and erasure events one by one, pipelined. Per event this used
        to cost a statement each. The tables are disjoint, so only the order within each one
        matters, and a subject's registration always comes before its other events."""
        registered = [e for e in events if type(e) is Subject.Registered]
        consents = [e for e in events if type(e) in _CONSENT_EVENTS]
        others = [e for e in events if type(e) in _ONE_BY_ONE]
        rectified = [e for e in events if type(e) is Subject.PersonalDataRectified]
        if registered:
            curs.execute(
                self.sql(
                    "INSERT INTO {schema}.subjects (subject_id, tenant, subject_ref, "
                    "registered_at, position) SELECT *, %b FROM unnest(%b::uuid[], %b::text[], "
                    "%b::bytea[], %b::timestamptz[]) ON CONFLICT (subject_id) DO NOTHING"
                ),
                [
                    self.batch_position,
                    [e.originator_id for e in registered],
                    [e.tenant for e in registered],
                    [sealed_bytes(e.subject_ref) for e in registered],
                    [e.timestamp for e in registered],
                ],
            )
        if others:
            with curs.connection.pipeline():
                for e in others:
                    self.handlers[type(e)](curs, e)
        if consents:
            self._fold_consents(curs, consents)
        for e in rectified:  # after the fold: a correction may follow its grant in the batch
            self.personal_data_rectified(curs, e)

    def _fold_consents(self, curs: Cursor[DictRow], events: Sequence[Any]) -> None:
        keys = list({(e.originator_id, e.purpose) for e in events})
        curs.execute(
            self.sql(
                f"SELECT {', '.join(_CONSENT_COLUMNS)} FROM {{schema}}.consents "
                "WHERE (subject_id, purpose) IN (SELECT * FROM unnest(%b::uuid[], %b::text[]))"
            ),
            [[k[0] for k in keys], [k[1] for k in keys]],
        )
        rows: dict[tuple[Any, str], dict[str, Any]] = {
            (r["subject_id"], r["purpose"]): dict(r) for r in curs.fetchall()
        }
        changed: set[tuple[Any, str]] = set()
        days = DayTally()
        for e in events:
            key = (e.originator_id, e.purpose)
            row = rows.get(key)
            if type(e) is Subject.ConsentGranted:
                still = row is not None and row["state"] == "granted"
                if not still:
                    days.grant(e.tenant, e.purpose, e.occurred_at)
                rows[key] = {
                    "subject_id": e.originator_id,
                    "purpose": e.purpose,
                    "tenant": e.tenant,
                    "state": "granted",
                    "consent_text_version": e.consent_text_version,
                    "changed_at": e.occurred_at,
                    "recorded_at": e.timestamp,
                    "source": e.source,
                    "event_id": e.event_id,
                    "first_granted_at": row["first_granted_at"] if row and still else e.occurred_at,
                    "evidence": sealed_bytes(e.evidence),
                    "ip_address": sealed_bytes(e.ip_address),
                    "user_agent": sealed_bytes(e.user_agent),
                    "position": self.batch_position,
                }
            elif row is not None:  # a withdrawal of a consent never granted changes nothing
                if row["state"] == "granted":
                    days.withdraw(e.tenant, e.purpose, e.occurred_at)
                row.update(
                    state="withdrawn",
                    changed_at=e.occurred_at,
                    recorded_at=e.timestamp,
                    source=e.source,
                    event_id=e.event_id,
                    evidence=sealed_bytes(e.evidence),
                    ip_address=None,
                    user_agent=None,
                    position=self.batch_position,
                )
            else:
                continue
            changed.add(key)
        if not changed:
            return
        written = [rows[k] for k in changed]
        columns = ", ".join(_CONSENT_COLUMNS)
        arrays = ", ".join(f"%b::{t}[]" for t in _CONSENT_COLUMNS.values())
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in list(_CONSENT_COLUMNS)[2:])
        # One statement writes both: the consents in a data-modifying WITH, the day counts
        # (``consent_days``) in its main INSERT, which may insert nothing.
        curs.execute(
            self.sql(
                f"WITH written AS (INSERT INTO {{schema}}.consents ({columns}) "
                f"SELECT * FROM unnest({arrays}) "
                f"ON CONFLICT (subject_id, purpose) DO UPDATE SET {updates}) " + consent_days.UPSERT
            ),
            [*([row[c] for row in written] for c in _CONSENT_COLUMNS), *days.arrays()],
        )

    def purpose_defined(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "INSERT INTO {schema}.purposes (tenant, purpose, required, legal_basis, "
                "description, current_version, texts, defined_at, event_id, direct_marketing, "
                "allowed_under_restriction, position) "
                "VALUES (%(tenant)s, %(purpose)s, %(required)s, %(basis)s, %(description)s, "
                "%(version)s, %(texts)s, %(at)s, %(event_id)s, %(marketing)s, %(restricted)s, "
                "%(position)s) "
                "ON CONFLICT (tenant, purpose) DO UPDATE SET required = EXCLUDED.required, "
                "direct_marketing = EXCLUDED.direct_marketing, "
                "allowed_under_restriction = EXCLUDED.allowed_under_restriction, "
                "legal_basis = EXCLUDED.legal_basis, description = EXCLUDED.description, "
                "current_version = EXCLUDED.current_version, "
                "texts = {schema}.purposes.texts || EXCLUDED.texts, "
                "defined_at = EXCLUDED.defined_at, event_id = EXCLUDED.event_id, "
                "position = EXCLUDED.position"
            ),
            {
                "tenant": e.tenant,
                "purpose": e.purpose,
                "required": e.required,
                "basis": e.legal_basis.value,
                "description": e.description,
                "version": e.consent_text_version,
                "texts": json.dumps(
                    {e.consent_text_version: e.consent_text} if e.consent_text_version else {}
                ),
                "at": e.occurred_at,
                "event_id": e.event_id,
                "marketing": e.direct_marketing,
                "restricted": e.allowed_under_restriction,
                "position": self.batch_position,
            },
        )

    def subject_registered(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "INSERT INTO {schema}.subjects (subject_id, tenant, subject_ref, registered_at, "
                "position) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (subject_id) DO NOTHING"
            ),
            [
                e.originator_id,
                e.tenant,
                sealed_bytes(e.subject_ref),
                e.timestamp,
                self.batch_position,
            ],
        )

    def consent_granted(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "INSERT INTO {schema}.consents (subject_id, purpose, tenant, state, "
                "consent_text_version, changed_at, recorded_at, source, event_id, "
                "first_granted_at, evidence, ip_address, user_agent, position) "
                "VALUES (%(subject)s, %(purpose)s, %(tenant)s, 'granted', %(version)s, %(at)s, "
                "%(recorded)s, %(source)s, %(event_id)s, %(at)s, %(evidence)s, %(ip)s, %(ua)s, "
                "%(position)s) "
                "ON CONFLICT (subject_id, purpose) DO UPDATE SET state = 'granted', "
                "consent_text_version = EXCLUDED.consent_text_version, "
                "changed_at = EXCLUDED.changed_at, recorded_at = EXCLUDED.recorded_at, "
                "source = EXCLUDED.source, event_id = EXCLUDED.event_id, "
                "first_granted_at = CASE WHEN {schema}.consents.state = 'granted' "
                "THEN {schema}.consents.first_granted_at ELSE EXCLUDED.first_granted_at END, "
                "evidence = EXCLUDED.evidence, ip_address = EXCLUDED.ip_address, "
                "user_agent = EXCLUDED.user_agent, position = EXCLUDED.position"
            ),
            {
                "subject": e.originator_id,
                "purpose": e.purpose,
                "tenant": e.tenant,
                "version": e.consent_text_version,
                "at": e.occurred_at,
                "recorded": e.timestamp,
                "source": e.source,
                "event_id": e.event_id,
                "evidence": sealed_bytes(e.evidence),
                "ip": sealed_bytes(e.ip_address),
                "ua": sealed_bytes(e.user_agent),
                "position": self.batch_position,
            },
        )

    def consent_withdrawn(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "UPDATE {schema}.consents SET state = 'withdrawn', changed_at = %(at)s, "
                "recorded_at = %(recorded)s, source = %(source)s, event_id = %(event_id)s, "
                "evidence = %(evidence)s, ip_address = NULL, user_agent = NULL, "
                "position = %(position)s WHERE subject_id = %(subject)s AND purpose = %(purpose)s"
            ),
            {
                "subject": e.originator_id,
                "purpose": e.purpose,
                "at": e.occurred_at,
                "recorded": e.timestamp,
                "source": e.source,
                "event_id": e.event_id,
                "evidence": sealed_bytes(e.evidence),
                "position": self.batch_position,
            },
        )

    def erasure_requested(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "UPDATE {schema}.subjects SET erasure_requested_at = %s, erasure_event_id = %s, "
                "position = %s WHERE subject_id = %s"
            ),
            [e.occurred_at, e.event_id, self.batch_position, e.originator_id],
        )

    def erasure_refused(self, curs: Cursor[DictRow], e: Any) -> None:
        """A refused request (legal hold) leaves the subject as it was before it."""
        curs.execute(
            self.sql(
                "UPDATE {schema}.subjects SET erasure_requested_at = NULL, "
                "erasure_event_id = NULL, position = %s "
                "WHERE subject_id = %s AND erasure_event_id = %s"
            ),
            [self.batch_position, e.originator_id, e.request_event_id],
        )

    def keys_shredded(self, curs: Cursor[DictRow], e: Any) -> None:
        """The subject's reference lookup went with its keys (in the ledger's own tables):
        nothing here changes but the row's position, so a reader that asks what changed (the
        purpose-check cache) drops what it knew of the subject."""
        curs.execute(
            self.sql("UPDATE {schema}.subjects SET position = %s WHERE subject_id = %s"),
            [self.batch_position, e.originator_id],
        )


_CONSENT_EVENTS = (Subject.ConsentGranted, Subject.ConsentWithdrawn)
_ONE_BY_ONE = (
    Tenant.PurposeDefined,
    Subject.ErasureRequested,
    Subject.ErasureRefused,
    Subject.KeysShredded,
    Subject.ProcessingRestricted,
    Subject.RestrictionLifted,
    Subject.ObjectionRaised,
    Subject.CompellingGroundsRecorded,
)
