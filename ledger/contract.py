"""The one place that maps between the Avro wire contract and the ledger's own types.

Inbound: a decoded ingest record becomes a :class:`Command` (checked beyond what Avro can say:
codes, lengths, a subject reference where one is needed, no future timestamps). Outbound: a
recorded event becomes a ``compliance.LedgerRecord`` with personal fields only as Sealed.

Error messages name fields, never their values: a rejected message's reason must not leak
the personal data it carried.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger import avro
from ledger.domain.rules import InvalidEvent
from ledger.domain.values import PURPOSE_CODE, TENANT_CODE, LegalBasis, Sealed

INGEST_TYPES = (
    "PurposeDefined",
    "ConsentGranted",
    "ConsentWithdrawn",
    "PersonalDataCollected",
    "DataDisclosed",
    "ErasureRequested",
)
SUBJECT_TYPES = frozenset(INGEST_TYPES) - {"PurposeDefined"}
ENVELOPE_FIELDS = ("event_id", "occurred_at", "producer", "tenant")
MAX_FUTURE = timedelta(days=1)
MAX_TEXT = 10_000
MAX_CATEGORIES = 50


@dataclass(frozen=True)
class Envelope:
    event_id: str
    tenant: str
    subject_ref: str | None
    occurred_at: datetime
    producer: str
    schema_version: int = 1


@dataclass(frozen=True)
class Command:
    """One ingest event, validated, with personal values still in clear (sealed on recording)."""

    kind: str
    envelope: Envelope
    facts: dict[str, Any] = field(default_factory=dict)
    personal: dict[str, str | None] = field(default_factory=dict)


def personal_fields(kind: str) -> frozenset[str]:
    return avro.schema(kind).personal_fields


def command_from_record(kind: str, record: Mapping[str, Any]) -> Command:
    """Raises InvalidEvent (reason ``schema_invalid``) for content Avro cannot rule out."""
    if kind not in INGEST_TYPES:
        raise avro.UnknownSchema(f"{kind} is not an ingest event type")
    env = _envelope(kind, record["envelope"])
    personal_names = personal_fields(kind)
    personal = {name: _personal_text(name, record.get(name)) for name in personal_names}
    facts = {k: v for k, v in record.items() if k != "envelope" and k not in personal_names}
    _check_facts(kind, facts)
    if "legal_basis" in facts:
        facts["legal_basis"] = LegalBasis[facts["legal_basis"]]
    return Command(kind, env, facts, personal)


def _envelope(kind: str, raw: Mapping[str, Any]) -> Envelope:
    _check_text("event_id", raw["event_id"], 200)
    _check_text("producer", raw["producer"], 100)
    if not TENANT_CODE.match(raw["tenant"]):
        raise InvalidEvent("envelope.tenant is not a valid tenant code")
    occurred_at = raw["occurred_at"]
    if occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)
    if occurred_at > datetime.now(UTC) + MAX_FUTURE:
        raise InvalidEvent("envelope.occurred_at is more than a day in the future")
    ref = _personal_text("envelope.subject_ref", raw.get("subject_ref"))
    if kind in SUBJECT_TYPES and not ref:
        raise InvalidEvent(f"{kind} needs envelope.subject_ref")
    if kind not in SUBJECT_TYPES and ref is not None:
        raise InvalidEvent(f"{kind} is not about a subject; envelope.subject_ref must be null")
    return Envelope(
        event_id=raw["event_id"],
        tenant=raw["tenant"],
        subject_ref=ref,
        occurred_at=occurred_at,
        producer=raw["producer"],
        schema_version=raw.get("schema_version", 1),
    )


def _check_text(name: str, value: str, limit: int) -> None:
    if not value.strip() or len(value) > limit or not value.isprintable():
        raise InvalidEvent(f"{name} must be 1-{limit} printable characters")


def _personal_text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"{name} arrived sealed; sealed ingest is not enabled for this ledger")
    if len(value) > MAX_TEXT:
        raise InvalidEvent(f"{name} is longer than {MAX_TEXT} characters")
    return value


def _check_facts(kind: str, facts: Mapping[str, Any]) -> None:
    if "purpose" in facts and not PURPOSE_CODE.match(facts["purpose"]):
        raise InvalidEvent("purpose is not a valid purpose code")
    for name in ("source", "consent_text_version", "recipient"):
        if name in facts:
            _check_text(name, facts[name], 200)
    if "consent_text" in facts:
        _check_text("consent_text", facts["consent_text"].replace("\n", " "), MAX_TEXT)
    if "categories" in facts:
        categories = facts["categories"]
        if not 1 <= len(categories) <= MAX_CATEGORIES:
            raise InvalidEvent(f"categories must list 1-{MAX_CATEGORIES} data categories")
        for category in categories:
            _check_text("categories[]", category, 100)


def record_from_command(cmd: Command) -> dict[str, Any]:
    """The Avro record for a command: what the producer client sends."""
    env = cmd.envelope
    record: dict[str, Any] = {
        "envelope": {
            "event_id": env.event_id,
            "tenant": env.tenant,
            "subject_ref": env.subject_ref,
            "occurred_at": env.occurred_at,
            "producer": env.producer,
            "schema_version": env.schema_version,
        },
        **cmd.facts,
        **cmd.personal,
    }
    if isinstance(record.get("legal_basis"), LegalBasis):
        record["legal_basis"] = record["legal_basis"].value
    return record


def new_event_id() -> str:
    return str(uuid.uuid4())


# Outbound: recorded events as ledger records.


def _sealed_record(value: Sealed) -> dict[str, Any]:
    return {
        "scheme": value.scheme,
        "key_id": value.key_id,
        "nonce": value.nonce,
        "ciphertext": value.ciphertext,
    }


def _avro_value(value: object) -> object:
    if isinstance(value, Sealed):
        return _sealed_record(value)
    if isinstance(value, LegalBasis):
        return value.value
    return value


def ledger_record(
    *,
    sequence: int,
    event_type: str,
    aggregate_id: uuid.UUID,
    aggregate_version: int,
    state: Mapping[str, Any],
) -> dict[str, Any]:
    """Maps a stored event's decoded state to a ``compliance.LedgerRecord``.

    ``event_type`` is the event class name (``Registered`` events of tenants and subjects
    become ``TenantRegistered`` and ``SubjectRegistered``).
    """
    fields = {k: _avro_value(v) for k, v in state.items() if k != "timestamp"}
    tenant = fields.get("tenant") or fields.get("code")
    if event_type == "TenantRegistered":
        body: dict[str, Any] = {"tenant": fields["code"], "name": fields["name"]}
    elif event_type == "SubjectRegistered":
        body = {"tenant": fields["tenant"], "subject_ref": fields["subject_ref"]}
    else:
        envelope = {
            "event_id": fields.pop("event_id"),
            "tenant": fields.pop("tenant"),
            "subject_ref": None,
            "occurred_at": fields.pop("occurred_at"),
            "producer": fields.pop("producer"),
            "schema_version": 1,
        }
        body = {"envelope": envelope, **fields}
    return {
        "sequence": sequence,
        "event_type": event_type,
        "aggregate_id": str(aggregate_id),
        "aggregate_version": aggregate_version,
        "tenant": tenant,
        "recorded_at": state["timestamp"],
        "event": (f"compliance.{event_type}", body),
    }


def command_from_message(message: bytes) -> Command:
    """Decodes an ingest message. Raises avro.UndecodableMessage, avro.UnknownSchema or
    InvalidEvent, each with a reason fit to publish (no field values)."""
    schema, record = avro.decode(message)
    return command_from_record(schema.short_name, record)
