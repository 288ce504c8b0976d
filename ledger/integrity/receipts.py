"""Consent receipts: a subject's consent records in the ISO/IEC TS 27560 structure, as the
W3C DPV guide for 27560 writes it (JSON-LD with DPV terms), signed with their evidence.

Rules this module keeps (``docs/audit.md``, "Consent receipts"):

- **Built from the ledger's events, not from a projection**: the subject's grants and
  withdrawals of a purpose, the tenant's definitions of that purpose (consent text by
  version) and the tenant's name, read from their stored states' clear fields.
- **Nothing personal**: the data subject is named by the ledger's pseudonymous subject id;
  IP addresses, user agents and evidence stay sealed in the events and out of the record.
- **One record per purpose**, its ``dpv:hasConsentStatus`` the full history (grants and
  withdrawals, oldest first), the last entry the current state. A receipt wraps one record;
  the portability export wraps every purpose the subject ever answered. Both rest on the
  consent events they list, which the verifier matches to the record (``documents``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from ledger.integrity import documents
from ledger.integrity.checkpoints import Checkpoint
from ledger.integrity.documents import DocumentSigner, event_type, recorded_at, state_of
from ledger.storage.chain import Row
from ledger.storage.store import LedgerStore

FORMAT = "ledger-consent-receipt/v1"
RECORD_PROFILE = "https://w3id.org/dpv/schema/dpv-27560#record"
RECEIPT_PROFILE = "https://w3id.org/dpv/schema/dpv-27560#receipt"
CONTEXT = {
    "dpv": "https://w3id.org/dpv#",
    "dct": "http://purl.org/dc/terms/",
    "eu-gdpr": "https://w3id.org/dpv/legal/eu/gdpr#",
    "schema": "https://schema.org/",
}
CONSENT_EVENTS = {"ConsentGranted": "dpv:ConsentGiven", "ConsentWithdrawn": "dpv:ConsentWithdrawn"}
_RECORDS = uuid5(NAMESPACE_URL, "urn:compliance-ledger:consent-record")


class NoConsent(LookupError):
    """The subject never granted nor withdrew the purpose (or any purpose)."""


def _time(state: dict[str, Any], field: str) -> str | None:
    value = state.get(field)
    return str(value.get("_data_")) if isinstance(value, dict) else None


class Catalogue:
    """What a tenant's own events say: its name and each purpose's definitions."""

    def __init__(self, tenant_rows: Sequence[Row]) -> None:
        self.name = ""
        self.definitions: dict[str, list[dict[str, Any]]] = {}
        for row in tenant_rows:
            state = state_of(row)
            if event_type(row[3]) == "Registered":
                self.name = str(state.get("name", ""))
            elif event_type(row[3]) == "PurposeDefined":
                self.definitions.setdefault(str(state.get("purpose")), []).append(state)

    def latest(self, purpose: str) -> dict[str, Any]:
        found = self.definitions.get(purpose)
        return found[-1] if found else {}

    def text(self, purpose: str, version: str) -> str | None:
        for state in reversed(self.definitions.get(purpose, [])):
            if state.get("consent_text_version") == version:
                return str(state.get("consent_text", ""))
        return None


def consent_rows(subject_rows: Sequence[Row], purpose: str | None = None) -> list[Row]:
    """The subject's grants and withdrawals (of one purpose, or of all), in ledger order."""
    return [
        row
        for row in subject_rows
        if event_type(row[3]) in CONSENT_EVENTS
        and (purpose is None or state_of(row).get("purpose") == purpose)
    ]


def record(
    tenant: str, subject_id: UUID, purpose: str, rows: Sequence[Row], catalogue: Catalogue
) -> dict[str, Any]:
    """The ISO/IEC TS 27560 consent record of one purpose, from its consent events."""
    definition = catalogue.latest(purpose)
    statuses, versions = [], []
    for row in rows:
        state = state_of(row)
        status: dict[str, Any] = {
            "@type": CONSENT_EVENTS[event_type(row[3])],
            "dct:identifier": state.get("event_id"),
            "dpv:isIndicatedAtTime": _time(state, "occurred_at"),
            "dct:date": recorded_at(state),
            "dpv:isIndicatedBy": "dpv:DataSubject",
            "dpv:hasIndicationMethod": state.get("source"),
            "dct:source": state.get("producer"),
        }
        version = state.get("consent_text_version")
        if isinstance(version, str):
            status["dct:hasVersion"] = version
            if version not in versions:
                versions.append(version)
        statuses.append(status)
    return {
        "@type": "dpv:ConsentRecord",
        "dct:identifier": str(uuid5(_RECORDS, f"{tenant}/{subject_id}/{purpose}")),
        "dct:conformsTo": RECORD_PROFILE,
        "dpv:hasDataSubject": {"@type": "dpv:DataSubject", "dct:identifier": str(subject_id)},
        "dpv:hasDataController": {
            "@type": "dpv:DataController",
            "dct:identifier": tenant,
            "dpv:hasName": catalogue.name,
        },
        "dpv:hasNotice": [
            {
                "@type": "dpv:ConsentNotice",
                "dct:identifier": f"{purpose}/{version}",
                "dct:hasVersion": version,
                "dct:description": catalogue.text(purpose, version),
            }
            for version in versions
        ],
        "dpv:hasProcess": {
            "@type": "dpv:Process",
            "dpv:hasPurpose": {
                "@type": "dpv:Purpose",
                "dct:identifier": purpose,
                "dct:description": definition.get("description", ""),
            },
            "dpv:hasLegalBasis": ["dpv:Consent", "eu-gdpr:A6-1-a"],
            "dpv:hasConsentControl": {"@type": ["dpv:ProvideConsent", "dpv:WithdrawConsent"]},
        },
        "dpv:hasConsentStatus": statuses,
    }


def receipt(
    tenant: str,
    subject_id: UUID,
    subject_rows: Sequence[Row],
    catalogue: Catalogue,
    created: str,
    purpose: str | None = None,
) -> tuple[dict[str, Any], list[Row]]:
    """A 27560 receipt wrapping the record of ``purpose`` (every purpose if None), and the
    consent events it rests on."""
    rows = consent_rows(subject_rows, purpose)
    if not rows:
        raise NoConsent(f"the subject has answered no consent{f' to {purpose}' if purpose else ''}")
    purposes = list(dict.fromkeys(str(state_of(r).get("purpose")) for r in rows))
    records = [record(tenant, subject_id, p, consent_rows(rows, p), catalogue) for p in purposes]
    last = rows[-1][0] if rows else 0
    document = {
        "@context": CONTEXT,
        "@type": "dpv:ConsentReceipt",
        "dct:identifier": str(uuid5(_RECORDS, f"receipt/{tenant}/{subject_id}/{purpose}/{last}")),
        "dct:conformsTo": RECEIPT_PROFILE,
        "dct:created": created,
        "dct:publisher": tenant,
        "schema:recipient": "dpv:DataSubject",
        "dpv:hasRecordOfActivity": records[0] if purpose is not None else records,
    }
    return document, rows


def issue(
    store: LedgerStore,
    signer: DocumentSigner,
    checkpoints: Sequence[Checkpoint],
    tenant: str,
    subject_id: UUID,
    created: str,
    purpose: str | None = None,
) -> dict[str, Any]:
    """The signed receipt of one purpose (every purpose if None). Raises NoSuchSubject,
    NoConsent or NotYetCheckpointed."""
    rows = documents.subject_rows(store, tenant, subject_id)
    catalogue = Catalogue(documents.tenant_rows(store, tenant))
    body, evidenced = receipt(tenant, subject_id, rows, catalogue, created, purpose)
    return documents.make(store, signer, checkpoints, FORMAT, body, evidenced)
