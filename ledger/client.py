"""The producer client: what an upstream Python service imports to tell the ledger a fact.

    from ledger.client import LedgerClient

    with LedgerClient("kafka:9092", producer="signup-web") as ledger:
        ledger.grant_consent(
            tenant="acme", subject_ref="customer-1842", purpose="newsletter",
            consent_text_version="2024-05", source="signup-form", ip_address="203.0.113.7",
        )

Every method builds the event, checks it against the Avro schema *and* the ledger's content
rules (the same code the ingest consumer runs), and raises :class:`InvalidEvent` before
anything is sent. It returns the ``event_id``; re-sending a fact with the same id is safe —
the ledger records it once. Sends are asynchronous; :meth:`flush` (or leaving the ``with``
block) waits until the broker has acknowledged them all and raises if any failed.

Rules the ledger applies after sending (unknown tenant or purpose, withdrawal of a required
consent, disclosure without a legal basis, anything after erasure) are reported on the
rejected topic, not here.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from ledger import avro, contract
from ledger.domain.rules import InvalidEvent
from ledger.domain.values import LegalBasis
from ledger.kafka.producer import make_producer
from ledger.settings import Topics

__all__ = ["InvalidEvent", "LedgerClient", "LegalBasis"]


def message_key(tenant: str, subject_ref: str | None) -> bytes:
    """Partition key on the ingest topic: keeps one subject's events in order.

    A hash, so the reference itself is not in the key. (The ingest topic is short-lived and
    access-restricted; the ledger topic is keyed by the random subject id instead.)
    """
    if subject_ref is None:
        return tenant.encode()
    return hashlib.sha256(f"{tenant}\x00{subject_ref}".encode()).hexdigest()[:32].encode()


class LedgerClient:
    def __init__(
        self,
        bootstrap: str,
        *,
        producer: str,
        topic: str = Topics.ingest,
        **kafka_config: Any,
    ) -> None:
        self.producer_name = producer
        self.topic = topic
        self._producer = make_producer(bootstrap, **kafka_config)
        self._futures: list[Any] = []

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
        consent_text: str,
        consent_text_version: str,
        legal_basis: LegalBasis | str,
        required: bool = False,
        description: str = "",
        **envelope: Any,
    ) -> str:
        facts = {
            "purpose": purpose,
            "consent_text": consent_text,
            "consent_text_version": consent_text_version,
            "required": required,
            "legal_basis": _basis(legal_basis),
            "description": description,
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

    def send_raw(self, value: bytes, key: bytes | None = None) -> None:
        """Sends bytes unchecked. For tests and demos of the ledger's refusals only."""
        self._futures.append(self._producer.send(self.topic, key=key, value=value))

    def send_command(self, command: contract.Command) -> str:
        """Validates and sends a ready-made command (used by tools such as `ledger demo`)."""
        record = contract.record_from_command(command)
        try:
            avro.check(command.kind, record)
        except avro.InvalidRecord as exc:
            raise InvalidEvent(str(exc)) from None
        validated = contract.command_from_record(command.kind, record)
        value = avro.encode(command.kind, record)
        key = message_key(validated.envelope.tenant, validated.envelope.subject_ref)
        self._futures.append(self._producer.send(self.topic, key=key, value=value))
        return validated.envelope.event_id

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


def _basis(value: LegalBasis | str) -> LegalBasis:
    try:
        return value if isinstance(value, LegalBasis) else LegalBasis[value.upper()]
    except KeyError:
        raise InvalidEvent(
            f"legal_basis must be one of {', '.join(b.value for b in LegalBasis)}"
        ) from None
