"""The producer client: what an upstream Python service imports to tell the ledger a fact.

    from ledger.client import LedgerClient, fetch_ingest_key

    key = fetch_ingest_key("https://ledger.example", api_key)  # once at start, then daily
    with LedgerClient("kafka:9092", producer="signup-web", ingest_key=key) as ledger:
        ledger.grant_consent(
            tenant="acme", subject_ref="customer-1842", purpose="newsletter",
            consent_text_version="2024-05", source="signup-form", ip_address="203.0.113.7",
        )

**Sealed or in clear.** With ``ingest_key`` (one :class:`IngestPublicKey` per tenant the
client sends for) every personal field, ``subject_ref`` included, is sealed to the ledger's
public key before it leaves the process, and an event for a tenant without a key is refused.
Without ``ingest_key`` the client sends personal fields **in clear**; the ledger rejects them
(``plaintext_personal_data``) unless the tenant has explicitly allowed plaintext ingest.

**Sessions (sealed ingest v2).** The client seals in sessions: one HPKE key agreement per
tenant per session, then one HMAC and one AES-GCM call per field. A session ends after
``session_messages`` messages (default 10,000) or ``session_seconds`` (default 600),
whichever comes first; the ledger refuses sessions beyond its own limits (default 100,000
messages, one hour). The session secret lives only in this process's memory and opens only
the messages of its own session: whoever reads this process's memory can read what it sends
anyway. ``session_scheme`` chooses the KEM; by default the hybrid ML-KEM-768 + X25519 one
when the ledger's key offers it (see ``docs/contract.md``).

Every method builds the event, checks it against the Avro schema *and* the ledger's content
rules (the same code the ingest consumer runs), and raises :class:`InvalidEvent` before
anything is sent. It returns the ``event_id``; re-sending a fact with the same id is safe —
the ledger records it once. Sends are asynchronous; :meth:`flush` (or leaving the ``with``
block) waits until the broker has acknowledged them all and raises if any failed.

**Kafka security.** The producer uses the ``LEDGER_KAFKA_*`` TLS and SASL variables of the
process environment (``docs/operations.md``), or ``security=KafkaSecurity(...)`` from
:mod:`ledger.kafka.security`; kafka-python options passed as keyword arguments override both.

**Which Kafka client.** kafka-python by default. ``kafka_client="librdkafka"`` sends through
librdkafka (``pip install 'compliance-ledger[librdkafka]'``), which does the per-record work
in C: use it above about 10,000 events/s from one process (``docs/measured.md``). Same
guarantees, same security settings; its own settings go in ``librdkafka_config``.

Rules the ledger applies after sending (unknown tenant or purpose, consent to a purpose not
catalogued under consent, withdrawal of a required consent, disclosure without a legal basis,
anything after erasure) are reported on the rejected topic, not here.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from ledger.domain.rules import InvalidEvent
from ledger.domain.values import LegalBasis
from ledger.kafka.librdkafka import LibrdkafkaProducer
from ledger.kafka.producer import make_producer
from ledger.kafka.topics import Topics
from ledger.keys import crypto_ingest
from ledger.keys.crypto_ingest import IngestPublicKey
from ledger.wire import avro, contract

__all__ = ["IngestPublicKey", "InvalidEvent", "LedgerClient", "LegalBasis", "fetch_ingest_key"]


def message_key(tenant: str, subject_ref: str | None, routing_key: bytes | None = None) -> bytes:
    """Partition key on the ingest topic: ``<tenant>/<bucket>``, so one subject's events stay
    in order in one partition. Catalogue events are keyed by the tenant alone.

    The bucket is a 16-bit keyed hash of the reference under the tenant's routing key (see
    :func:`ledger.keys.crypto_ingest.routing_bucket` for what that hides and what not).
    """
    if subject_ref is None:
        return tenant.encode()
    bucket = crypto_ingest.routing_bucket(routing_key, tenant, subject_ref)
    return f"{tenant}/{bucket:04x}".encode()


def fetch_ingest_key(api_url: str, api_key: str, *, timeout: float = 10.0) -> IngestPublicKey:
    """The current ingest key of the API key's tenant, from ``GET /v1/ingest-key``.

    Fetch it when the producer starts and again at least daily: after a rotation the retired
    key keeps working only for ``LEDGER_INGEST_RETENTION``. Use https: whoever could swap
    this answer could read what is sealed to it.
    """
    if not api_url.startswith(("https://", "http://")):
        raise ValueError("api_url must be an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        api_url.rstrip("/") + "/v1/ingest-key",
        headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return IngestPublicKey.from_json(json.load(response))


class LedgerClient:
    """Sends ingest events; see the module docstring for sealed versus plaintext sending."""

    def __init__(
        self,
        bootstrap: str,
        *,
        producer: str,
        topic: str = Topics.ingest,
        ingest_key: IngestPublicKey | Iterable[IngestPublicKey] | None = None,
        session_messages: int = crypto_ingest.DEFAULT_SESSION_MESSAGES,
        session_seconds: float = crypto_ingest.DEFAULT_SESSION_SECONDS,
        session_scheme: str | None = None,
        kafka_client: str = "kafka-python",
        librdkafka_config: Mapping[str, Any] | None = None,
        **kafka_config: Any,
    ) -> None:
        self.producer_name = producer
        self.topic = topic
        keys = [ingest_key] if isinstance(ingest_key, IngestPublicKey) else ingest_key or ()
        self.ingest_keys = {key.tenant: key for key in keys}
        self._sealers = {
            key.tenant: crypto_ingest.SessionSealer(
                key,
                scheme=session_scheme,
                max_messages=session_messages,
                max_seconds=session_seconds,
            )
            for key in self.ingest_keys.values()
        }
        self._producer: Any
        if kafka_client == "kafka-python":
            self._producer = make_producer(bootstrap, **kafka_config)
        elif kafka_client == "librdkafka":
            unknown = set(kafka_config) - {"security"}
            if unknown:
                raise ValueError(
                    f"kafka-python options {sorted(unknown)} do not apply to librdkafka; "
                    "pass librdkafka settings as librdkafka_config"
                )
            self._producer = LibrdkafkaProducer(
                bootstrap, security=kafka_config.get("security"), **dict(librdkafka_config or {})
            )
        else:
            raise ValueError("kafka_client is 'kafka-python' or 'librdkafka'")
        self._futures: list[Any] = []
        self.messages_sent = 0
        self.bytes_sent = 0  # message values, before Kafka's framing and compression

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is None:
                self.flush()
        finally:
            self.close()

    def flush(self, timeout: float | None = None) -> None:
        """Waits for every pending send; raises the first delivery error."""
        self._producer.flush(timeout=timeout)
        futures, self._futures = self._futures, []
        for future in futures:
            future.get(timeout=0)

    def close(self) -> None:
        self._producer.close()

    # One method per event type. Keyword-only; optional envelope fields last.

    def define_purpose(
        self,
        *,
        tenant: str,
        purpose: str,
        legal_basis: LegalBasis | str,
        consent_text: str = "",
        consent_text_version: str = "",
        required: bool = False,
        description: str = "",
        direct_marketing: bool = False,
        allowed_under_restriction: bool = False,
        **envelope: Any,
    ) -> str:
        """Defines a purpose. The consent text and its version are needed under legal basis
        CONSENT; a purpose under another basis may leave both empty. ``direct_marketing``
        makes an objection to it absolute; ``allowed_under_restriction`` keeps it allowed
        while the subject's processing is restricted (storage, legal claims)."""
        facts = {
            "purpose": purpose,
            "consent_text": consent_text,
            "consent_text_version": consent_text_version,
            "required": required,
            "legal_basis": _basis(legal_basis),
            "description": description,
            "direct_marketing": direct_marketing,
            "allowed_under_restriction": allowed_under_restriction,
        }
        return self._send("PurposeDefined", tenant, None, facts, {}, **envelope)

    def grant_consent(
        self,
        *,
        tenant: str,
        subject_ref: str,
        purpose: str,
        consent_text_version: str,
        source: str,
        ip_address: str | None = None,
        user_agent: str | None = None,
        evidence: str | None = None,
        **envelope: Any,
    ) -> str:
        facts = {"purpose": purpose, "consent_text_version": consent_text_version, "source": source}
        personal = {"ip_address": ip_address, "user_agent": user_agent, "evidence": evidence}
        return self._send("ConsentGranted", tenant, subject_ref, facts, personal, **envelope)

    def withdraw_consent(
        self,
        *,
        tenant: str,
        subject_ref: str,
        purpose: str,
        source: str,
        evidence: str | None = None,
        **envelope: Any,
    ) -> str:
        facts = {"purpose": purpose, "source": source}
        personal = {"evidence": evidence}
        return self._send("ConsentWithdrawn", tenant, subject_ref, facts, personal, **envelope)

    def record_collection(
        self,
        *,
        tenant: str,
        subject_ref: str,
        purpose: str,
        categories: list[str],
        source: str,
        description: str | None = None,
        **envelope: Any,
    ) -> str:
        facts = {"purpose": purpose, "categories": list(categories), "source": source}
        personal = {"description": description}
        return self._send("PersonalDataCollected", tenant, subject_ref, facts, personal, **envelope)

    def record_disclosure(
        self,
        *,
        tenant: str,
        subject_ref: str,
        recipient: str,
        purpose: str,
        categories: list[str],
        legal_basis: LegalBasis | str,
        reference: str = "",
        note: str | None = None,
        **envelope: Any,
    ) -> str:
        facts = {
            "recipient": recipient,
            "purpose": purpose,
            "categories": list(categories),
            "legal_basis": _basis(legal_basis),
            "reference": reference,
        }
        personal = {"note": note}
        return self._send("DataDisclosed", tenant, subject_ref, facts, personal, **envelope)

    def request_erasure(
        self,
        *,
        tenant: str,
        subject_ref: str,
        source: str,
        reason: str | None = None,
        **envelope: Any,
    ) -> str:
        facts = {"source": source}
        personal = {"reason": reason}
        return self._send("ErasureRequested", tenant, subject_ref, facts, personal, **envelope)

    def restrict_processing(
        self,
        *,
        tenant: str,
        subject_ref: str,
        restriction_reference: str,
        grounds: str,
        source: str,
        purposes: Iterable[str] = (),
        note: str | None = None,
        **envelope: Any,
    ) -> str:
        """GDPR art. 18: no ``purposes`` restricts every purpose. ``grounds`` is one of
        ACCURACY_CONTESTED, UNLAWFUL_PROCESSING, LEGAL_CLAIMS, OBJECTION_PENDING."""
        facts = {
            "restriction_reference": restriction_reference,
            "grounds": grounds,
            "purposes": list(purposes),
            "source": source,
        }
        personal = {"note": note}
        return self._send("ProcessingRestricted", tenant, subject_ref, facts, personal, **envelope)

    def lift_restriction(
        self,
        *,
        tenant: str,
        subject_ref: str,
        restriction_reference: str,
        source: str,
        note: str | None = None,
        **envelope: Any,
    ) -> str:
        facts = {"restriction_reference": restriction_reference, "source": source}
        personal = {"note": note}
        return self._send("RestrictionLifted", tenant, subject_ref, facts, personal, **envelope)

    def raise_objection(
        self,
        *,
        tenant: str,
        subject_ref: str,
        purpose: str,
        source: str,
        reason: str | None = None,
        **envelope: Any,
    ) -> str:
        """GDPR art. 21, to a purpose resting on legitimate interests or a public task, or
        catalogued as direct marketing."""
        facts = {"purpose": purpose, "source": source}
        personal = {"reason": reason}
        return self._send("ObjectionRaised", tenant, subject_ref, facts, personal, **envelope)

    def record_compelling_grounds(
        self,
        *,
        tenant: str,
        subject_ref: str,
        purpose: str,
        grounds_reference: str,
        reasoning: str,
        **envelope: Any,
    ) -> str:
        facts = {"purpose": purpose, "grounds_reference": grounds_reference}
        personal: dict[str, str | None] = {"reasoning": reasoning}
        kind = "CompellingGroundsRecorded"
        return self._send(kind, tenant, subject_ref, facts, personal, **envelope)

    def rectify(
        self,
        *,
        tenant: str,
        subject_ref: str,
        corrects_event_id: str,
        field: str,
        value: str,
        source: str,
        reason: str | None = None,
        **envelope: Any,
    ) -> str:
        """GDPR art. 16: corrects ``field`` of the subject's event ``corrects_event_id``."""
        facts = {"corrects_event_id": corrects_event_id, "field": field, "source": source}
        personal: dict[str, str | None] = {"value": value, "reason": reason}
        return self._send("PersonalDataRectified", tenant, subject_ref, facts, personal, **envelope)

    def open_request(
        self,
        *,
        tenant: str,
        subject_ref: str,
        kind: str,
        channel: str,
        identity_verified: bool = False,
        details: str | None = None,
        **envelope: Any,
    ) -> str:
        """Opens a request in the register (GDPR art. 12(3)); the returned event id is the
        request's id. It is due one month after ``occurred_at`` (default now)."""
        facts = {"kind": kind, "channel": channel, "identity_verified": identity_verified}
        personal = {"details": details}
        return self._send("RequestOpened", tenant, subject_ref, facts, personal, **envelope)

    def extend_request(
        self,
        *,
        tenant: str,
        subject_ref: str,
        request_id: str,
        months: int,
        reason: str,
        **envelope: Any,
    ) -> str:
        facts = {"request_id": request_id, "months": months, "extension_reason": reason}
        return self._send("RequestExtended", tenant, subject_ref, facts, {}, **envelope)

    def complete_request(
        self,
        *,
        tenant: str,
        subject_ref: str,
        request_id: str,
        resolved_by_event_id: str = "",
        refused_because: str | None = None,
        **envelope: Any,
    ) -> str:
        """FULFILLED by ``resolved_by_event_id``, or REFUSED with ``refused_because``."""
        facts = {
            "request_id": request_id,
            "outcome": "REFUSED" if refused_because else "FULFILLED",
            "resolved_by_event_id": resolved_by_event_id,
        }
        personal = {"reason": refused_because}
        return self._send("RequestCompleted", tenant, subject_ref, facts, personal, **envelope)

    def send_raw(self, value: bytes, key: bytes | None = None) -> None:
        """Sends bytes unchecked. For tests and demos of the ledger's refusals only."""
        self._futures.append(self._producer.send(self.topic, key=key, value=value))

    def send_command(self, command: contract.Command) -> str:
        """Validates, seals (with an ingest key) and sends a ready-made command."""
        record = contract.record_from_command(command)
        try:
            env = contract.command_from_record(command.kind, record).envelope
            ingest_key = self._ingest_key(env.tenant)
            sealed = record
            if ingest_key is not None and contract.has_personal_values(command.kind, record):
                sealer = self._sealers[env.tenant].next_message()
                sealed = contract.seal_record(
                    command.kind,
                    record,
                    lambda field, text: sealer.seal(env.event_id, field, text),
                    sealer.session,
                    tagged=True,
                )
            # fastavro refuses what it cannot write; the schema check, which names the
            # offending fields, costs as much again, so it runs only then (below).
            value = avro.encode(command.kind, sealed, checked=True)
        except InvalidEvent:
            raise
        except Exception as exc:  # a value of the wrong type
            raise _schema_error(command.kind, record, exc) from None
        routing = ingest_key.routing_key if ingest_key else None
        key = message_key(env.tenant, env.subject_ref, routing)
        self._futures.append(self._producer.send(self.topic, key=key, value=value))
        self.messages_sent += 1
        self.bytes_sent += len(value)
        return env.event_id

    def session_scheme(self, tenant: str) -> str | None:
        """The KEM this client's sessions for ``tenant`` use (None: it sends in clear)."""
        sealer = self._sealers.get(tenant)
        return sealer.scheme if sealer else None

    def _ingest_key(self, tenant: str) -> IngestPublicKey | None:
        if not self.ingest_keys:
            return None
        try:
            return self.ingest_keys[tenant]
        except KeyError:
            raise InvalidEvent(
                f"this client seals for {', '.join(sorted(self.ingest_keys))} and holds no "
                f"ingest key of tenant {tenant!r}"
            ) from None

    def _send(
        self,
        kind: str,
        tenant: str,
        subject_ref: str | None,
        facts: dict[str, Any],
        personal: dict[str, str | None],
        *,
        event_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> str:
        envelope = contract.Envelope(
            event_id=event_id or contract.new_event_id(),
            tenant=tenant,
            subject_ref=subject_ref,
            occurred_at=occurred_at or datetime.now(UTC),
            producer=self.producer_name,
        )
        return self.send_command(contract.Command(kind, envelope, facts, personal))


def _schema_error(kind: str, record: Mapping[str, Any], error: Exception) -> InvalidEvent:
    """Why ``record`` could not be encoded, naming fields, never values."""
    try:
        avro.check(kind, record)
    except avro.InvalidRecord as exc:
        return InvalidEvent(str(exc))
    return InvalidEvent(f"{kind} could not be encoded: {type(error).__name__}")


def _basis(value: LegalBasis | str) -> LegalBasis:
    try:
        return value if isinstance(value, LegalBasis) else LegalBasis[value.upper()]
    except KeyError:
        raise InvalidEvent(
            f"legal_basis must be one of {', '.join(b.value for b in LegalBasis)}"
        ) from None
