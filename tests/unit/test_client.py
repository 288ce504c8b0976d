"""The producer client validates before sending, with a fake Kafka producer."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

import ledger.client
from ledger.client import InvalidEvent, LedgerClient, message_key
from ledger.domain.values import LegalBasis, Sealed
from ledger.keys import crypto_ingest
from ledger.keys.crypto_ingest import (
    FIELD_SCHEME,
    SESSION_HYBRID,
    IngestPrivateKey,
    IngestPublicKey,
)
from ledger.wire import avro, contract
from tests.builders import IP, OCCURRED_AT, REF, USER_AGENT, define_purpose, disclose, grant
from tests.fakes import FakeFuture
from tests.sealing import received_in_clear


@dataclass
class FakeProducer:
    bootstrap: str
    config: dict[str, Any]
    error: Exception | None = None
    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    flushed: int = 0
    closed: bool = False

    def send(self, topic: str, *, key: bytes, value: bytes) -> FakeFuture:
        self.sent.append((topic, key, value))
        return FakeFuture(self.error)

    def flush(self, timeout: float | None = None) -> None:
        self.flushed += 1

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def producers(monkeypatch: pytest.MonkeyPatch) -> list[FakeProducer]:
    made: list[FakeProducer] = []

    def make_producer(bootstrap: str, **config: Any) -> FakeProducer:
        made.append(FakeProducer(bootstrap, config))
        return made[-1]

    monkeypatch.setattr(ledger.client, "make_producer", make_producer)
    return made


@pytest.fixture
def client(producers: list[FakeProducer]) -> LedgerClient:
    return LedgerClient("kafka:9092", producer="crm", topic="ingest-topic")


def _grant(client: LedgerClient, **changes: Any) -> str:
    fields: dict[str, Any] = {
        "tenant": "acme",
        "subject_ref": REF,
        "purpose": "newsletter",
        "consent_text_version": "1",
        "source": "signup-form",
        "ip_address": IP,
        "user_agent": USER_AGENT,
        "occurred_at": OCCURRED_AT,
    }
    return client.grant_consent(**{**fields, **changes})


def _disclose(client: LedgerClient, **changes: Any) -> str:
    fields: dict[str, Any] = {
        "tenant": "acme",
        "subject_ref": REF,
        "recipient": "mailer-inc",
        "purpose": "newsletter",
        "categories": ["contact.email"],
        "legal_basis": "CONSENT",
        "reference": "contract-17",
        "occurred_at": OCCURRED_AT,
    }
    return client.record_disclosure(**{**fields, **changes})


REFUSED: dict[str, Callable[[LedgerClient], str]] = {
    "bad legal basis": lambda c: _disclose(c, legal_basis="BECAUSE_WE_CAN"),
    "bad legal basis on a purpose": lambda c: c.define_purpose(
        tenant="acme",
        purpose="newsletter",
        consent_text="Send me news.",
        consent_text_version="1",
        legal_basis="MAYBE",
    ),
    "missing subject_ref": lambda c: _grant(c, subject_ref=""),
    "null subject_ref": lambda c: _grant(c, subject_ref=None),
    "bad purpose code": lambda c: _grant(c, purpose="News Letter"),
    "bad tenant code": lambda c: _grant(c, tenant="ACME Inc"),
    "no categories": lambda c: _disclose(c, categories=[]),
    "wrong type for a field": lambda c: _disclose(c, categories=[42]),
    "blank source": lambda c: _grant(c, source="  "),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_an_invalid_event_is_refused_before_sending(
    client: LedgerClient, producers: list[FakeProducer], case: str
) -> None:
    with pytest.raises(InvalidEvent) as raised:
        REFUSED[case](client)
    assert producers[0].sent == []
    assert REF not in str(raised.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda c: _disclose(c, categories=[42]), "categories"),
        (lambda c: _grant(c, source=7), "source"),
        (lambda c: _grant(c, user_agent=b"Mozilla"), "user_agent"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_its_field(
    client: LedgerClient, producers: list[FakeProducer], change: Any, field: str
) -> None:
    with pytest.raises(InvalidEvent, match=field):
        change(client)
    assert producers[0].sent == []


def test_a_valid_event_is_sent_once_as_the_same_command(
    client: LedgerClient, producers: list[FakeProducer]
) -> None:
    event_id = _grant(client)

    [(topic, key, value)] = producers[0].sent
    assert topic == "ingest-topic"
    assert REF.encode() not in key
    expected = grant(REF, ip_address=IP, user_agent=USER_AGENT, event_id=event_id)
    assert contract.command_from_message(value) == received_in_clear(expected)


def test_the_message_key_does_not_contain_the_reference(
    client: LedgerClient, producers: list[FakeProducer]
) -> None:
    _grant(client)
    _grant(client)
    _grant(client, subject_ref="bob@example.org")
    keys = [key for _, key, _ in producers[0].sent]
    assert REF.encode() not in keys[0]
    assert b"alice" not in keys[0]
    assert keys[0] == keys[1]  # one subject's events share a partition
    assert keys[0] != keys[2]


def test_a_purpose_definition_is_keyed_by_its_tenant(
    client: LedgerClient, producers: list[FakeProducer]
) -> None:
    cmd = define_purpose(basis=LegalBasis.CONTRACT)
    event_id = client.define_purpose(
        tenant="acme",
        purpose=cmd.facts["purpose"],
        consent_text=cmd.facts["consent_text"],
        consent_text_version="1",
        legal_basis="contract",  # case does not matter
        occurred_at=OCCURRED_AT,
    )
    [(_, key, value)] = producers[0].sent
    assert key == b"acme"
    decoded = contract.command_from_message(value)
    assert decoded.envelope.event_id == event_id
    assert decoded.facts == cmd.facts


def test_a_given_event_id_is_kept_and_fresh_ones_differ(
    client: LedgerClient, producers: list[FakeProducer]
) -> None:
    assert _disclose(client, event_id="crm-4711") == "crm-4711"
    first, second = _disclose(client), _disclose(client)
    assert first != second
    ids = [contract.command_from_message(v).envelope.event_id for _, _, v in producers[0].sent]
    assert ids == ["crm-4711", first, second]


def test_send_command_sends_a_ready_made_command(
    client: LedgerClient, producers: list[FakeProducer]
) -> None:
    cmd = disclose(REF, note="alice.private@example.org")
    assert client.send_command(cmd) == cmd.envelope.event_id
    [(_, _, value)] = producers[0].sent
    assert contract.command_from_message(value) == received_in_clear(cmd)


def test_flush_raises_when_the_broker_refused_a_send(
    client: LedgerClient, producers: list[FakeProducer]
) -> None:
    producers[0].error = RuntimeError("not enough replicas")
    _grant(client)
    with pytest.raises(RuntimeError, match="replicas"):
        client.flush()


def test_leaving_the_block_flushes_and_closes(producers: list[FakeProducer]) -> None:
    with LedgerClient("kafka:9092", producer="crm", linger_ms=50) as client:
        _grant(client)
    [producer] = producers
    assert (producer.bootstrap, producer.config) == ("kafka:9092", {"linger_ms": 50})
    assert producer.flushed == 1
    assert producer.closed


# Sealed ingest.


@pytest.fixture
def ingest_private() -> IngestPrivateKey:
    return IngestPrivateKey.generate()


def _ingest_key(private: IngestPrivateKey, tenant: str = "acme") -> IngestPublicKey:
    return IngestPublicKey(
        tenant,
        "ik-20260501-0a1b2c3d",
        private.public_key(),
        b"r" * 32,
        hybrid_public_key=private.hybrid_public_key(),
    )


class _Opener:
    """Opens v2 sessions with a bare private key, recording what it was asked to open."""

    def __init__(self, private: IngestPrivateKey) -> None:
        self.private = private
        self.opened: list[tuple[str, str, str]] = []
        self.sessions: list[crypto_ingest.SealSession] = []

    def open(self, tenant: str, event_id: str, field: str, sealed: Sealed) -> str:
        self.opened.append((tenant, event_id, field))
        return self.private.open(tenant, event_id, field, sealed)

    def open_session(
        self, tenant: str, session: crypto_ingest.SealSession, sent_at: object
    ) -> _Fields:
        self.sessions.append(session)
        return _Fields(self, tenant, session, self.private.open_session(tenant, session))


class _Fields:
    def __init__(
        self, opener: _Opener, tenant: str, session: crypto_ingest.SealSession, prk: bytes
    ) -> None:
        self.opener, self.tenant, self.session, self.prk = opener, tenant, session, prk

    def open(self, event_id: str, field: str, sealed: Sealed) -> str:
        self.opener.opened.append((self.tenant, event_id, field))
        info = crypto_ingest.field_info(
            self.session.key_id, self.tenant, event_id, field, self.session.message
        )
        return crypto_ingest.open_field(self.prk, info, sealed.nonce, sealed.ciphertext)


def test_with_an_ingest_key_every_personal_field_is_sealed(
    producers: list[FakeProducer], ingest_private: IngestPrivateKey
) -> None:
    client = LedgerClient("kafka:9092", producer="crm", ingest_key=_ingest_key(ingest_private))
    event_id = _grant(client, evidence="signed by Alice Example")
    [(_, key, value)] = producers[0].sent
    for personal in (REF, IP, USER_AGENT, "signed by Alice Example"):
        assert personal.encode() not in value
        assert personal.encode() not in key
    _, record = avro.decode(value)
    for sealed in (record["envelope"]["subject_ref"], record["ip_address"], record["evidence"]):
        assert (sealed["scheme"], sealed["key_id"]) == (FIELD_SCHEME, "ik-20260501-0a1b2c3d")
    session = record["envelope"]["seal_session"]
    assert (session["scheme"], session["message"]) == (SESSION_HYBRID, 0)
    opener = _Opener(ingest_private)
    decoded = contract.command_from_message(value, opener)
    expected = grant(REF, ip_address=IP, user_agent=USER_AGENT, event_id=event_id)
    assert decoded == replace(
        expected, personal={**expected.personal, "evidence": "signed by Alice Example"}
    )
    assert sorted(f for _, _, f in opener.opened) == [
        "envelope.subject_ref",
        "evidence",
        "ip_address",
        "user_agent",
    ]
    assert {(t, e) for t, e, _ in opener.opened} == {("acme", event_id)}


def test_a_key_made_before_v2_gets_x25519_sessions(
    producers: list[FakeProducer], ingest_private: IngestPrivateKey
) -> None:
    v1_only = IngestPrivateKey(ingest_private.raw()[:32])
    assert v1_only.hybrid_public_key() is None
    client = LedgerClient("kafka:9092", producer="crm", ingest_key=_ingest_key(v1_only))
    _grant(client)
    _, record = avro.decode(producers[0].sent[0][2])
    session = crypto_ingest.SealSession.from_record(record["envelope"]["seal_session"])
    assert session.scheme == crypto_ingest.SESSION_X25519 and len(session.secret) == 80
    assert v1_only.open_session("acme", session)  # the ledger's v1 key opens it
    with pytest.raises(ValueError, match="no hybrid public key"):
        LedgerClient(
            "kafka:9092",
            producer="crm",
            ingest_key=_ingest_key(v1_only),
            session_scheme=crypto_ingest.SESSION_HYBRID,
        )


def test_a_sealing_client_refuses_a_tenant_it_holds_no_key_for(
    producers: list[FakeProducer], ingest_private: IngestPrivateKey
) -> None:
    keys = [_ingest_key(ingest_private), _ingest_key(ingest_private, "globex")]
    client = LedgerClient("kafka:9092", producer="crm", ingest_key=keys)
    _grant(client, tenant="globex")
    with pytest.raises(InvalidEvent, match="no ingest key of tenant 'initech'"):
        _grant(client, tenant="initech")
    assert len(producers[0].sent) == 1


def test_message_keys_use_the_tenant_routing_key(
    producers: list[FakeProducer], ingest_private: IngestPrivateKey
) -> None:
    key = _ingest_key(ingest_private)
    client = LedgerClient("kafka:9092", producer="crm", ingest_key=key)
    _grant(client)
    _disclose(client)
    keys = [k for _, k, _ in producers[0].sent]
    assert keys[0] == keys[1] == message_key("acme", REF, key.routing_key)
    assert re.fullmatch(rb"acme/[0-9a-f]{4}", keys[0])
    assert keys[0] != message_key("acme", REF, b"s" * 32)


def test_without_an_ingest_key_personal_fields_go_in_clear(
    client: LedgerClient, producers: list[FakeProducer]
) -> None:
    _grant(client)
    [(_, key, value)] = producers[0].sent
    assert REF.encode() in value  # the ledger refuses this unless the tenant allows it
    assert key == message_key("acme", REF)
