"""Erasure certificates: for a completed erasure, every copy that held the subject's personal
data, what made it unreadable and when, resting on the ledger events that did it.

Rules this module keeps (``docs/audit.md``, "Erasure certificates"):

- **Only for a completed erasure**: the subject's last ``ErasureRequested`` followed by
  ``KeysShredded``, ``ProcessorsNotified`` and ``ErasureCompleted`` for that request
  (:class:`NotCompleted` otherwise). Those four events are the evidence.
- **Each copy says what made it unreadable, and when**: the event store, the ledger topic, the
  projections and backups by the key deletion ``KeysShredded`` records (a backup holds keys
  only wrapped, and a restore re-applies every journaled erasure before serving); the
  recipients by the deliveries ``ProcessorsNotified`` records, with their outcomes; the ingest
  topic by its retention and by the destruction of the ingest keys that could have sealed the
  subject's messages — a date, or ``null`` with the rule while a key is still in use.
- **Nothing personal**: recipients are organisations, the subject is its pseudonymous id, and
  every time and status comes from the ledger or the key table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from ledger.integrity import documents
from ledger.integrity.checkpoints import Checkpoint
from ledger.integrity.documents import DocumentSigner, event_type, recorded_at, state_of
from ledger.keys.ingest_keys import IngestKeyRow
from ledger.storage.chain import Row
from ledger.storage.store import LedgerStore

FORMAT = "ledger-erasure-certificate/v1"
STEPS = ("ErasureRequested", "KeysShredded", "ProcessorsNotified", "ErasureCompleted")


class NotCompleted(LookupError):
    """The subject has no completed erasure (yet)."""


def erasure_rows(subject_rows: Sequence[Row]) -> dict[str, Row]:
    """The four events of the subject's last erasure request, by type."""
    requested = [r for r in subject_rows if event_type(r[3]) == "ErasureRequested"]
    if not requested:
        raise NotCompleted("the subject has no erasure request")
    request_id = state_of(requested[-1]).get("event_id")
    found = {"ErasureRequested": requested[-1]}
    for row in subject_rows:
        kind = event_type(row[3])
        if kind in STEPS[1:] and state_of(row).get("request_event_id") == request_id:
            found[kind] = row
    missing = [step for step in STEPS if step not in found]
    if missing:
        raise NotCompleted(f"the erasure {request_id} is not completed: no {', '.join(missing)}")
    return found


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _ingest(
    keys: Sequence[IngestKeyRow], retention: timedelta, requested: datetime, last: datetime
) -> dict[str, Any]:
    """The ingest topic: messages expire ``retention`` after they were written; a sealed one
    is unreadable once the key it was sealed to is destroyed."""
    involved = [k for k in keys if k.created_at <= requested]
    listed, dates = [], []
    for key in involved:
        if key.destroyed_at is not None:
            unreadable: datetime | None = key.destroyed_at
        elif key.retired_at is not None:
            unreadable = key.retired_at + retention
        else:
            unreadable = None  # in use: destroyed one retention after it is retired
        listed.append(
            {"key_id": key.key_id, "state": key.state, "unreadable_from": _iso(unreadable)}
        )
        dates.append(unreadable)
    expired = last + retention
    return {
        "copy": "ingest_topic",
        "held": "the producers' messages about the subject, kept for the ingest retention",
        "made_unreadable_by": "deletion by the topic's retention; for sealed messages, also "
        "the destruction of the ingest keys they were sealed to (a key in use is destroyed "
        "one retention after its rotation)",
        "retention": f"P{retention.days}DT{retention.seconds}S",
        "messages_expire_by": _iso(expired),
        "ingest_keys": listed,
        "at": None if None in dates or not dates else _iso(max(d for d in dates if d)),
    }


def certificate(
    tenant: str,
    subject_id: UUID,
    steps: dict[str, Row],
    ingest_keys: Sequence[IngestKeyRow],
    ingest_retention: timedelta,
) -> tuple[dict[str, Any], list[Row]]:
    """The certificate body and the events it rests on (``documents.make`` signs them)."""
    states = {kind: state_of(row) for kind, row in steps.items()}
    shredded_at = recorded_at(states["KeysShredded"])
    seq = {kind: row[0] for kind, row in steps.items()}
    by_key = {
        "made_unreadable_by": "the subject's data key and reference lookup were deleted in the "
        "transaction that recorded KeysShredded",
        "at": shredded_at,
        "evidence": [seq["KeysShredded"]],
    }
    disclosed: dict[str, list[str]] = states["KeysShredded"].get("disclosed_to") or {}
    deliveries: list[dict[str, Any]] = states["ProcessorsNotified"].get("deliveries") or []
    recipients = sorted({*disclosed, *(str(d.get("recipient")) for d in deliveries)})
    requested = datetime.fromisoformat(recorded_at(states["ErasureRequested"]))
    body = {
        "tenant": tenant,
        "subject_id": str(subject_id),
        "request": {
            "event_id": states["ErasureRequested"].get("event_id"),
            "requested_at": recorded_at(states["ErasureRequested"]),
        },
        "shredded_at": shredded_at,
        "completed_at": recorded_at(states["ErasureCompleted"]),
        "copies": [
            {
                "copy": "event_store",
                "held": "every event about the subject, personal fields sealed under its key",
                **by_key,
            },
            {
                "copy": "ledger_topic",
                "held": "the same events as published on the ledger topic, sealed alike",
                **by_key,
            },
            {
                "copy": "projections",
                "held": "the views' personal columns, sealed under the same key",
                **by_key,
            },
            {
                "copy": "backups",
                "held": "database backups taken before the erasure, holding the key only "
                "wrapped; a restore re-applies every erasure journaled on the ledger topic "
                "before it serves",
                **by_key,
            },
            _ingest(ingest_keys, ingest_retention, requested, requested),
            {
                "copy": "recipients",
                "held": "data disclosed to third parties, and the processors' copies",
                "made_unreadable_by": "a signed erasure notice to each recipient and "
                "processor endpoint; the outcome of each delivery is recorded",
                "at": recorded_at(states["ProcessorsNotified"]),
                "evidence": [seq["ProcessorsNotified"]],
                "recipients": [
                    {
                        "recipient": name,
                        "disclosures": disclosed.get(name, []),
                        "deliveries": [
                            {
                                key: d.get(key)
                                for key in ("delivery_id", "status", "attempts", "last_status_code")
                            }
                            for d in deliveries
                            if d.get("recipient") == name
                        ],
                    }
                    for name in recipients
                ],
            },
        ],
    }
    return body, [steps[kind] for kind in STEPS]


def issue(
    store: LedgerStore,
    signer: DocumentSigner,
    checkpoints: Sequence[Checkpoint],
    tenant: str,
    subject_id: UUID,
    ingest_keys: Sequence[IngestKeyRow],
    ingest_retention: timedelta,
) -> dict[str, Any]:
    """The signed certificate of the subject's last erasure. Raises NoSuchSubject,
    NotCompleted or NotYetCheckpointed."""
    steps = erasure_rows(documents.subject_rows(store, tenant, subject_id))
    body, evidenced = certificate(tenant, subject_id, steps, ingest_keys, ingest_retention)
    return documents.make(store, signer, checkpoints, FORMAT, body, evidenced)
