"""The one place that maps between the Avro wire contract and the ledger's own types.

Inbound: a decoded ingest record becomes a :class:`Command` (checked beyond what Avro can say:
codes, lengths, a subject reference where one is needed, no future timestamps). Personal
fields sealed to the ledger's ingest key are opened here, through an :class:`IngestOpener`;
the command records which personal fields arrived in clear instead, so the tenant's ingest
policy can refuse them. Outbound: a recorded event becomes a ``compliance.LedgerRecord`` with
personal fields only as Sealed.

Error messages name fields, never their values: a rejected message's reason must not leak
the personal data it carried.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ledger.domain.requests import OUTCOMES, check_open
from ledger.domain.rights import RECTIFIABLE, RESTRICTION_GROUNDS
from ledger.domain.rules import IngestSealInvalid, InvalidEvent
from ledger.domain.tenant import check_consent_text
from ledger.domain.values import PURPOSE_CODE, TENANT_CODE, LegalBasis, Sealed
from ledger.keys.crypto_ingest import FIELD_SCHEME, SealSession
from ledger.wire import avro

INGEST_TYPES = (
    "PurposeDefined",
    "ConsentGranted",
    "ConsentWithdrawn",
    "PersonalDataCollected",
    "DataDisclosed",
    "ErasureRequested",
    "LegalHoldPlaced",
    "LegalHoldReleased",
    "ProcessingRestricted",
    "RestrictionLifted",
    "ObjectionRaised",
    "CompellingGroundsRecorded",
    "PersonalDataRectified",
    "RequestOpened",
    "RequestIdentityVerified",
    "RequestExtended",
    "RequestCompleted",
)
SUBJECT_TYPES = frozenset(INGEST_TYPES) - {"PurposeDefined"}
ENVELOPE_FIELDS = ("event_id", "occurred_at", "producer", "tenant")
MAX_FUTURE = timedelta(days=1)
MAX_TEXT = 10_000
MAX_CATEGORIES = 50
SUBJECT_REF_FIELD = "envelope.subject_ref"
# Personal fields that are optional in Avro (every personal field is a nullable union) but
# that the event needs.
REQUIRED_PERSONAL = {
    "CompellingGroundsRecorded": ("reasoning",),
    "PersonalDataRectified": ("value",),
}
RECTIFIABLE_FIELDS = frozenset().union(*RECTIFIABLE.values())


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
    """One ingest event, validated, with personal values in clear (sealed on recording).

    ``plaintext_fields`` names the personal fields (``envelope.subject_ref``, ``ip_address``...)
    that arrived in clear on the ingest topic. Only :func:`command_from_record` sets it, from
    the wire; a command built in process (tests, tools) did not cross the topic.
    """

    kind: str
    envelope: Envelope
    facts: dict[str, Any] = field(default_factory=dict)
    personal: dict[str, str | None] = field(default_factory=dict)
    plaintext_fields: frozenset[str] = frozenset()


class SessionOpener(Protocol):
    """Opens the fields of one message sealed in a v2 session."""

    def open(self, event_id: str, field: str, sealed: Sealed) -> str: ...


class IngestOpener(Protocol):
    """Opens a personal field a producer sealed to the ledger's ingest key. Raises a
    RuleViolation naming the field, never its value, when it cannot."""

    def open(self, tenant: str, event_id: str, field: str, sealed: Sealed) -> str:
        """A v1 field (``HPKE-X25519-ingest-v1``)."""

    def open_session(
        self, tenant: str, session: SealSession, sent_at: datetime | None
    ) -> SessionOpener:
        """A message's v2 session (``envelope.seal_session``); ``sent_at`` is the Kafka
        record's timestamp, if it has one, against which the session's age is checked."""


@functools.cache
def personal_fields(kind: str) -> frozenset[str]:
    return avro.schema(kind).personal_fields


def command_from_record(
    kind: str,
    record: Mapping[str, Any],
    opener: IngestOpener | None = None,
    sent_at: datetime | None = None,
) -> Command:
    """Raises InvalidEvent (reason ``schema_invalid``) for content Avro cannot rule out, and
    the opener's violations for sealed fields that do not open."""
    if kind not in INGEST_TYPES:
        raise avro.UnknownSchema(f"{kind} is not an ingest event type")
    session = record["envelope"].get("seal_session")
    personal_values = _PersonalValues(opener, session, sent_at)
    env = _envelope(kind, record["envelope"], personal_values)
    personal_names = personal_fields(kind)
    personal = {
        name: personal_values.text(env.tenant, env.event_id, name, record.get(name))
        for name in sorted(personal_names)
    }
    facts = {k: v for k, v in record.items() if k != "envelope" and k not in personal_names}
    _check_facts(kind, facts)
    _check_required_personal(kind, personal)
    _check_outcome(kind, facts, personal)
    if "legal_basis" in facts:
        facts["legal_basis"] = LegalBasis[facts["legal_basis"]]
    return Command(kind, env, facts, personal, frozenset(personal_values.in_clear))


class _PersonalValues:
    """Turns personal values as they arrived (null, a string, or Sealed) into text, and
    remembers which arrived in clear."""

    def __init__(
        self,
        opener: IngestOpener | None,
        session: Mapping[str, Any] | None = None,
        sent_at: datetime | None = None,
    ) -> None:
        self.opener = opener
        self.in_clear: set[str] = set()
        self.session_record = session
        self.sent_at = sent_at
        self._session: SessionOpener | None = None

    def text(self, tenant: str, event_id: str, name: str, value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            self.in_clear.add(name)
            text = value
        else:
            text = self._open(tenant, event_id, name, value)
        if len(text) > MAX_TEXT:
            raise InvalidEvent(f"{name} is longer than {MAX_TEXT} characters")
        return text

    def _open(self, tenant: str, event_id: str, name: str, value: object) -> str:
        if not isinstance(value, Mapping):
            raise InvalidEvent(f"{name} is neither text nor a Sealed record")
        if self.opener is None:
            raise InvalidEvent(f"{name} arrived sealed, and this reader holds no ingest key")
        sealed = Sealed(value["scheme"], value["key_id"], value["nonce"], value["ciphertext"])
        if sealed.scheme != FIELD_SCHEME:
            return self.opener.open(tenant, event_id, name, sealed)
        if self._session is None:
            if self.session_record is None:
                raise IngestSealInvalid(
                    f"{name} is sealed with {FIELD_SCHEME}, and the message carries no "
                    "envelope.seal_session"
                )
            header = SealSession.from_record(self.session_record)
            self._session = self.opener.open_session(tenant, header, self.sent_at)
        return self._session.open(event_id, name, sealed)


def _envelope(kind: str, raw: Mapping[str, Any], personal_values: _PersonalValues) -> Envelope:
    _check_text("event_id", raw["event_id"], 200)
    _check_text("producer", raw["producer"], 100)
    if not TENANT_CODE.match(raw["tenant"]):
        raise InvalidEvent("envelope.tenant is not a valid tenant code")
    occurred_at = raw["occurred_at"]
    if occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)
    if occurred_at > datetime.now(UTC) + MAX_FUTURE:
        raise InvalidEvent("envelope.occurred_at is more than a day in the future")
    ref = personal_values.text(
        raw["tenant"], raw["event_id"], SUBJECT_REF_FIELD, raw.get("subject_ref")
    )
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


def _check_facts(kind: str, facts: Mapping[str, Any]) -> None:
    if "purpose" in facts and not PURPOSE_CODE.match(facts["purpose"]):
        raise InvalidEvent("purpose is not a valid purpose code")
    for name in (
        "source",
        "recipient",
        "hold_reference",
        "restriction_reference",
        "grounds_reference",
        "corrects_event_id",
        "channel",
        "method",
        "request_id",
        "extension_reason",
    ):
        if name in facts:
            _check_text(name, facts[name], 200)
    if "purposes" in facts:
        if len(facts["purposes"]) > MAX_CATEGORIES:
            raise InvalidEvent(f"purposes may list at most {MAX_CATEGORIES} purposes")
        if not all(PURPOSE_CODE.match(code) for code in facts["purposes"]):
            raise InvalidEvent("purposes[] is not a valid purpose code")
    if facts.get("resolved_by_event_id"):
        _check_text("resolved_by_event_id", facts["resolved_by_event_id"], 200)
    if kind == "RequestOpened":
        check_open(facts["kind"])
    if kind == "RequestCompleted" and facts["outcome"] not in OUTCOMES:
        raise InvalidEvent(f"outcome must be one of {', '.join(sorted(OUTCOMES))}")
    if kind == "RequestExtended" and facts["months"] not in (1, 2):
        raise InvalidEvent("months must be 1 or 2")
    if kind == "PersonalDataRectified" and facts["field"] not in RECTIFIABLE_FIELDS:
        raise InvalidEvent(f"field must be one of {', '.join(sorted(RECTIFIABLE_FIELDS))}")
    if "grounds" in facts and facts["grounds"] not in RESTRICTION_GROUNDS:
        raise InvalidEvent(f"grounds must be one of {', '.join(sorted(RESTRICTION_GROUNDS))}")
    if facts.get("reference"):  # optional: "" when the producer has none
        _check_text("reference", facts["reference"], 200)
    if kind == "PurposeDefined":
        text, version = facts["consent_text"], facts["consent_text_version"]
        check_consent_text(LegalBasis[facts["legal_basis"]], text, version)
        if version:
            _check_text("consent_text_version", version, 200)
            _check_text("consent_text", text.replace("\n", " "), MAX_TEXT)
    elif "consent_text_version" in facts:
        _check_text("consent_text_version", facts["consent_text_version"], 200)
    if facts.get("description"):  # the purpose's; a collection's is personal, not a fact
        _check_text("description", facts["description"].replace("\n", " "), MAX_TEXT)
    if "categories" in facts:
        categories = facts["categories"]
        if not 1 <= len(categories) <= MAX_CATEGORIES:
            raise InvalidEvent(f"categories must list 1-{MAX_CATEGORIES} data categories")
        for category in categories:
            _check_text("categories[]", category, 100)


def _check_required_personal(kind: str, personal: Mapping[str, str | None]) -> None:
    for name in REQUIRED_PERSONAL.get(kind, ()):
        if not personal.get(name):
            raise InvalidEvent(f"{kind} needs {name}")


def _check_outcome(kind: str, facts: Mapping[str, Any], personal: Mapping[str, Any]) -> None:
    """A request FULFILLED names the event that answered it; one REFUSED gives the reason."""
    if kind != "RequestCompleted":
        return
    if facts["outcome"] == "FULFILLED" and not facts.get("resolved_by_event_id"):
        raise InvalidEvent("a FULFILLED request needs resolved_by_event_id")
    if facts["outcome"] == "REFUSED" and (
        facts.get("resolved_by_event_id") or not personal.get("reason")
    ):
        raise InvalidEvent("a REFUSED request needs a reason and names no resolved_by_event_id")


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
            "seal_session": None,
        },
        **cmd.facts,
        **cmd.personal,
    }
    if isinstance(record.get("legal_basis"), LegalBasis):
        record["legal_basis"] = record["legal_basis"].value
    return record


def has_personal_values(kind: str, record: Mapping[str, Any]) -> bool:
    """Whether sealing ``record`` would seal anything."""
    return record["envelope"].get("subject_ref") is not None or any(
        record.get(name) is not None for name in personal_fields(kind)
    )


def seal_record(
    kind: str,
    record: Mapping[str, Any],
    seal: Callable[[str, str], Sealed],
    session: SealSession | None = None,
    *,
    tagged: bool = False,
) -> dict[str, Any]:
    """The record with every personal value that is not null replaced by ``seal(field,
    text)``; field names are those :class:`IngestOpener` receives. ``session``, if given,
    becomes ``envelope.seal_session``. ``tagged`` names the union branch of each sealed value
    (fastavro's ``(name, value)`` form), which spares the encoder a search: for records that
    go straight to :func:`avro.encode`."""
    sealed = dict(record)
    envelope = dict(record["envelope"])

    def value(x: Sealed) -> Any:
        return ("compliance.Sealed", _sealed_record(x)) if tagged else _sealed_record(x)

    if session is not None:
        header = session.as_record()
        envelope["seal_session"] = ("compliance.SealSession", header) if tagged else header
    if envelope.get("subject_ref") is not None:
        envelope["subject_ref"] = value(seal(SUBJECT_REF_FIELD, envelope["subject_ref"]))
    sealed["envelope"] = envelope
    for name in personal_fields(kind):
        if record.get(name) is not None:
            sealed[name] = value(seal(name, record[name]))
    return sealed


def without_plaintext(message: bytes) -> tuple[bytes, list[str]]:
    """The message with every personal field that is in clear set to null, and those fields'
    names: what the rejected topic may carry. Sealed fields stay (they are ciphertext); a
    message that does not decode as an ingest event is returned unchanged."""
    try:
        schema, record = avro.decode(message)
    except (avro.UndecodableMessage, avro.UnknownSchema):
        return message, []
    kind = schema.short_name
    if kind not in INGEST_TYPES:
        return message, []
    envelope = dict(record["envelope"])
    removed = [SUBJECT_REF_FIELD] if isinstance(envelope.get("subject_ref"), str) else []
    removed += sorted(n for n in personal_fields(kind) if isinstance(record.get(n), str))
    if not removed:
        return message, []
    cleared = dict(record, envelope=envelope)
    for name in removed:
        if name == SUBJECT_REF_FIELD:
            envelope["subject_ref"] = None
        else:
            cleared[name] = None
    try:
        return avro.encode(kind, cleared), removed
    except avro.InvalidRecord:  # cannot happen for what decoded; withhold it all if it does
        return b"", removed


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
    chain: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Maps a stored event's decoded state to a ``compliance.LedgerRecord``.

    ``event_type`` is the event class name (``Registered`` events of tenants and subjects
    become ``TenantRegistered`` and ``SubjectRegistered``). ``chain`` is the event's
    ``compliance.ChainLink`` (``ledger.integrity.topic.chain_link``).
    """
    fields = {k: _avro_value(v) for k, v in state.items() if k != "timestamp"}
    tenant = fields.get("tenant") or fields.get("code")
    return {
        "sequence": sequence,
        "event_type": event_type,
        "aggregate_id": str(aggregate_id),
        "aggregate_version": aggregate_version,
        "tenant": tenant,
        "recorded_at": state["timestamp"],
        "event": (f"compliance.{event_type}", _ledger_body(event_type, fields)),
        "chain": chain,
    }


def _ledger_body(event_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    if event_type == "TenantRegistered":
        return {"tenant": fields["code"], "name": fields["name"]}
    if event_type == "IngestPolicySet":
        return {
            "tenant": fields["tenant"],
            "allow_plaintext_ingest": fields["allow_plaintext_ingest"],
        }
    if event_type == "SubjectReportPolicySet":
        allow = fields["allow_subject_reports"]
        return {"tenant": fields["tenant"], "allow_subject_reports": allow}
    if event_type == "SubjectRegistered":
        return {"tenant": fields["tenant"], "subject_ref": fields["subject_ref"]}
    envelope = {
        "event_id": fields.pop("event_id"),
        "tenant": fields.pop("tenant"),
        "subject_ref": None,
        "occurred_at": fields.pop("occurred_at"),
        "producer": fields.pop("producer"),
        "schema_version": 1,
        "seal_session": None,
    }
    return {"envelope": envelope, **fields}


def command_from_message(
    message: bytes, opener: IngestOpener | None = None, sent_at: datetime | None = None
) -> Command:
    """Decodes an ingest message. Raises avro.UndecodableMessage, avro.UnknownSchema or a
    RuleViolation, each with a reason fit to publish (no field values)."""
    schema, record = avro.decode(message)
    return command_from_record(schema.short_name, record, opener, sent_at)


def subject_command(
    kind: str,
    /,
    *,
    tenant: str,
    subject_ref: str,
    producer: str,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
    **values: Any,
) -> Command:
    """A subject command built in process (the CLI, the admin API), happening now or at
    ``occurred_at``: the values are split into facts and personal fields by the event's
    schema. The content rules of ingest apply: InvalidEvent (``schema_invalid``, naming the
    field, never its value)."""
    personal_names = personal_fields(kind)
    at = datetime.now(UTC) if occurred_at is None else occurred_at
    if at.tzinfo is None or at > datetime.now(UTC) + MAX_FUTURE:
        raise InvalidEvent("occurred_at must carry a time zone and not be in the future")
    envelope = Envelope(event_id or new_event_id(), tenant, subject_ref, at, producer)
    facts = {k: v for k, v in values.items() if k not in personal_names}
    personal = {k: v for k, v in values.items() if k in personal_names}
    _check_text("event_id", envelope.event_id, 200)
    _check_text("producer", producer, 100)
    _check_facts(kind, facts)
    _check_required_personal(kind, personal)
    _check_outcome(kind, facts, personal)
    for name, text in [(SUBJECT_REF_FIELD, subject_ref), *personal.items()]:
        if text is not None and len(text) > MAX_TEXT:
            raise InvalidEvent(f"{name} is longer than {MAX_TEXT} characters")
    return Command(kind, envelope, facts, personal)
