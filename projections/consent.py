"""Current consent state: per tenant, subject and purpose, granted or withdrawn, and why.

Tables (schema ``<ledger>_consent``):

- ``purposes``: each tenant's purpose catalogue — required or not, legal basis, every consent
  text version, and the event that defined the latest one.
- ``subjects``: each subject's tenant, sealed upstream reference, and erasure request time.
- ``consents``: one row per (subject, purpose) ever granted: ``granted`` or ``withdrawn``,
  the text version agreed to, when it happened upstream and when the ledger recorded it, the
  source, and the id of the event that proves the current state. A purpose with no row was
  never granted. Evidence, IP address and user agent of that event stay sealed.

A withdrawal is visible as soon as its batch commits; the ledger already refused withdrawals
of required consents, so this view never sees one.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow

from ledger.domain.subject import Subject
from ledger.domain.tenant import Tenant
from projections.view import Handler, View, sealed_bytes


class ConsentView(View):
    name = "consent"
    ddl = """
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
    PRIMARY KEY (tenant, purpose)
);
CREATE TABLE IF NOT EXISTS {schema}.subjects (
    subject_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    subject_ref bytea NOT NULL,
    registered_at timestamptz NOT NULL,
    erasure_requested_at timestamptz,
    erasure_event_id text
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
    PRIMARY KEY (subject_id, purpose)
)
"""

    def event_handlers(self) -> dict[type, Handler]:
        return {
            Tenant.PurposeDefined: self.purpose_defined,
            Subject.Registered: self.subject_registered,
            Subject.ConsentGranted: self.consent_granted,
            Subject.ConsentWithdrawn: self.consent_withdrawn,
            Subject.ErasureRequested: self.erasure_requested,
            Subject.ErasureRefused: self.erasure_refused,
        }

    def purpose_defined(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "INSERT INTO {schema}.purposes (tenant, purpose, required, legal_basis, "
                "description, current_version, texts, defined_at, event_id) "
                "VALUES (%(tenant)s, %(purpose)s, %(required)s, %(basis)s, %(description)s, "
                "%(version)s, %(texts)s, %(at)s, %(event_id)s) "
                "ON CONFLICT (tenant, purpose) DO UPDATE SET required = EXCLUDED.required, "
                "legal_basis = EXCLUDED.legal_basis, description = EXCLUDED.description, "
                "current_version = EXCLUDED.current_version, "
                "texts = {schema}.purposes.texts || EXCLUDED.texts, "
                "defined_at = EXCLUDED.defined_at, event_id = EXCLUDED.event_id"
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
            },
        )

    def subject_registered(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "INSERT INTO {schema}.subjects (subject_id, tenant, subject_ref, registered_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (subject_id) DO NOTHING"
            ),
            [e.originator_id, e.tenant, sealed_bytes(e.subject_ref), e.timestamp],
        )

    def consent_granted(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "INSERT INTO {schema}.consents (subject_id, purpose, tenant, state, "
                "consent_text_version, changed_at, recorded_at, source, event_id, "
                "first_granted_at, evidence, ip_address, user_agent) "
                "VALUES (%(subject)s, %(purpose)s, %(tenant)s, 'granted', %(version)s, %(at)s, "
                "%(recorded)s, %(source)s, %(event_id)s, %(at)s, %(evidence)s, %(ip)s, %(ua)s) "
                "ON CONFLICT (subject_id, purpose) DO UPDATE SET state = 'granted', "
                "consent_text_version = EXCLUDED.consent_text_version, "
                "changed_at = EXCLUDED.changed_at, recorded_at = EXCLUDED.recorded_at, "
                "source = EXCLUDED.source, event_id = EXCLUDED.event_id, "
                "first_granted_at = CASE WHEN {schema}.consents.state = 'granted' "
                "THEN {schema}.consents.first_granted_at ELSE EXCLUDED.first_granted_at END, "
                "evidence = EXCLUDED.evidence, ip_address = EXCLUDED.ip_address, "
                "user_agent = EXCLUDED.user_agent"
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
            },
        )

    def consent_withdrawn(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "UPDATE {schema}.consents SET state = 'withdrawn', changed_at = %(at)s, "
                "recorded_at = %(recorded)s, source = %(source)s, event_id = %(event_id)s, "
                "evidence = %(evidence)s, ip_address = NULL, user_agent = NULL "
                "WHERE subject_id = %(subject)s AND purpose = %(purpose)s"
            ),
            {
                "subject": e.originator_id,
                "purpose": e.purpose,
                "at": e.occurred_at,
                "recorded": e.timestamp,
                "source": e.source,
                "event_id": e.event_id,
                "evidence": sealed_bytes(e.evidence),
            },
        )

    def erasure_requested(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "UPDATE {schema}.subjects SET erasure_requested_at = %s, erasure_event_id = %s "
                "WHERE subject_id = %s"
            ),
            [e.occurred_at, e.event_id, e.originator_id],
        )

    def erasure_refused(self, curs: Cursor[DictRow], e: Any) -> None:
        """A refused request (legal hold) leaves the subject as it was before it."""
        curs.execute(
            self.sql(
                "UPDATE {schema}.subjects SET erasure_requested_at = NULL, erasure_event_id = NULL "
                "WHERE subject_id = %s AND erasure_event_id = %s"
            ),
            [e.originator_id, e.request_event_id],
        )
