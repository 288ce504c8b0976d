"""Hostile input on the ingest path (hypothesis), on an in-memory ledger with fake Kafka.

Whatever bytes arrive, the consumer's classification and recording end in one of two ways: a
valid fact (it meets every content rule of docs/contract.md) or a rejection whose reason is a
code that table documents, never ``internal_error`` (which means a bug). Nothing raises, nothing
takes long, and no rejection echoes a personal value: not in its detail, and not in the copy
published on the rejected topic once the message decodes as an ingest event.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.ingest import MAX_MESSAGE_BYTES, Rejection, classify
from ledger.application.service import Ledger
from ledger.domain.values import LegalBasis
from ledger.wire import avro, contract
from ledger.wire.contract import Command
from tests import builders as b
from tests import hostile as h
from tests.sealing import sealed_message
from tests.unit.test_ingest_classify import FakeRecord, consumer_for

pytestmark = pytest.mark.fuzz

REASONS = h.documented_reasons() - {"internal_error"}
DECODING = frozenset({"undecodable", "unknown_schema", "message_too_large"})
STALL_S = 1.0  # far above what any message here costs: a slower one is a stall


def fresh_ledger() -> Ledger:
    ledger = b.memory_ledger()
    ledger.register_tenant(b.TENANT, "Acme Ltd", allow_plaintext_ingest=True)
    ledger.record([b.define_purpose(), b.define_purpose("billing", basis=LegalBasis.CONTRACT)])
    return ledger


LEDGER = fresh_ledger()  # for classification alone, which records nothing


def classified(message: bytes | None, ledger: Ledger = LEDGER) -> Command | Rejection:
    started = time.perf_counter()
    result = classify(message, ledger.ingest_keys)
    assert time.perf_counter() - started < STALL_S
    if isinstance(result, Rejection):
        assert result.reason in REASONS, result
        assert result.detail
    else:
        assert_valid_fact(result)
    return result


def assert_valid_fact(cmd: Command) -> None:
    """What the content rules promise of an accepted command."""
    env = cmd.envelope
    for text in (env.event_id, env.producer, env.tenant):
        assert text.strip() and text.isprintable() and len(text) <= 200
    assert env.occurred_at.tzinfo is not None
    assert env.occurred_at <= datetime.now(UTC) + contract.MAX_FUTURE
    for name, value in cmd.facts.items():
        values = value if isinstance(value, list) else [value]
        for text in (v for v in values if isinstance(v, str)):
            assert text.replace("\n", " ").isprintable(), name
            assert len(text) <= contract.MAX_TEXT, name
    for value in cmd.personal.values():
        assert value is None or len(value) <= contract.MAX_TEXT


def ingest(message: bytes) -> tuple[str, dict[str, bytes], bytes]:
    """Runs one message through a fresh consumer: its outcome, and for a rejection the headers
    and value published on the rejected topic."""
    consumer, _, producer = consumer_for(fresh_ledger())
    report = consumer.process([FakeRecord(message, 0)])
    if report.rejected == 0:
        return ("recorded" if report.recorded else "duplicate"), {}, b""
    [sent] = producer.sent
    assert sent.headers["reason"].decode() in REASONS, sent.headers
    return "rejected", sent.headers, sent.value


def assert_nothing_personal(headers: dict[str, bytes], value: bytes, personal: list[str]) -> None:
    decodes = not isinstance(classify(value), Rejection) or classify(value).reason not in DECODING
    for text in (p.encode() for p in personal if len(p) >= 6):
        assert text not in headers.get("detail", b"")
        if decodes:  # an ingest event: personal fields in clear were removed from the copy
            assert text not in value


def sealed(cmd: Command) -> bytes:
    return sealed_message(cmd, LEDGER.ingest_keys.public_key_for(b.TENANT))


@given(st.binary(max_size=512))
@settings(max_examples=300)
def test_any_bytes_are_refused_with_a_reason_or_are_a_valid_event(data: bytes) -> None:
    classified(data)


@given(st.sampled_from(sorted(avro.registry())), st.binary(max_size=256))
@settings(max_examples=300)
def test_a_known_fingerprint_before_random_bytes_is_refused_with_a_reason(
    name: str, body: bytes
) -> None:
    result = classified(avro.MAGIC + avro.schema(name).fingerprint + body)
    assert isinstance(result, Rejection) or name.endswith(tuple(contract.INGEST_TYPES))


@given(h.commands, st.booleans(), st.data())
@settings(max_examples=100)
def test_a_truncated_message_is_undecodable(cmd: Command, seal: bool, data: st.DataObject) -> None:
    message = sealed(cmd) if seal else h.raw_message(cmd.kind, h.plaintext(cmd))
    cut = data.draw(st.integers(0, len(message) - 1))
    result = classified(message[:cut])
    assert isinstance(result, Rejection) and result.reason == "undecodable"


@given(h.commands, st.booleans(), st.data())
@settings(max_examples=100)
def test_flipped_bytes_are_refused_or_still_a_valid_event(
    cmd: Command, seal: bool, data: st.DataObject
) -> None:
    message = bytearray(sealed(cmd) if seal else h.raw_message(cmd.kind, h.plaintext(cmd)))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(message) - 1))
        message[position] ^= data.draw(st.integers(1, 255))
    classified(bytes(message))
    outcome, headers, value = ingest(bytes(message))
    if outcome == "rejected":
        assert_nothing_personal(headers, value, [*h.PERSONAL_VALUES])
        if seal:  # sealed personal fields are ciphertext wherever the message goes
            assert not any(p.encode() in value for p in h.PERSONAL_VALUES)


@given(h.commands, st.binary(min_size=8, max_size=8))
@settings(max_examples=50)
def test_an_unknown_fingerprint_is_an_unknown_schema(cmd: Command, fp: bytes) -> None:
    known = {s.fingerprint for s in avro.registry().values()}
    message = sealed(cmd)
    result = classified(message[:2] + fp + message[10:])
    if fp not in known:
        assert isinstance(result, Rejection) and result.reason == "unknown_schema"


@given(st.integers(1, 4 * MAX_MESSAGE_BYTES), st.binary(max_size=64))
@settings(max_examples=30)
def test_an_oversized_message_is_refused_before_it_is_decoded(excess: int, tail: bytes) -> None:
    message = sealed(b.grant(b.REF))
    oversized = message + b"\x00" * (MAX_MESSAGE_BYTES - len(message) + excess) + tail
    result = classified(oversized)
    assert result == Rejection(
        "message_too_large",
        f"message of {len(oversized)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit",
    )


def test_the_largest_valid_event_fits_under_the_default_limit() -> None:
    longest = "😀" * contract.MAX_TEXT  # the most UTF-8 bytes the rules allow in a field
    cmd = b.grant(longest, ip_address=longest, user_agent=longest, evidence=longest)
    facts = {**cmd.facts, "consent_text_version": "é" * 200, "source": "é" * 200}
    message = sealed(Command(cmd.kind, cmd.envelope, facts, cmd.personal))
    assert len(message) < MAX_MESSAGE_BYTES
    assert isinstance(classified(message), Command)


def test_the_consumer_applies_its_configured_limit() -> None:
    consumer, _, producer = consumer_for(fresh_ledger())
    consumer.max_message_bytes = 100
    message = sealed(b.grant(b.REF))
    report = consumer.process([FakeRecord(message, 0), FakeRecord(message[:100], 1)])
    assert (report.rejected, [s.headers["reason"] for s in producer.sent]) == (
        2,
        [b"message_too_large", b"undecodable"],
    )


@given(h.commands, st.data())
@settings(max_examples=150)
def test_a_field_of_the_wrong_type_is_refused_with_a_reason(
    cmd: Command, data: st.DataObject
) -> None:
    path = data.draw(st.sampled_from(h.field_paths(cmd.kind)), label="field")
    avro_type = data.draw(st.sampled_from(sorted(h.WRONG_TYPES)), label="type")
    value = data.draw(h.WRONG_TYPES[avro_type], label="value")
    record = h.plaintext(cmd)
    own = h.with_wrong_type(cmd.kind, record, path, avro_type, value, lie=False)
    result = classified(own)
    assert isinstance(result, Rejection) and result.reason == "unknown_schema"
    classified(h.with_wrong_type(cmd.kind, record, path, avro_type, value, lie=True))


def _text_paths(cmd: Command) -> list[str]:
    record = h.plaintext(cmd)
    paths = [f"envelope.{k}" for k, v in record["envelope"].items() if isinstance(v, str)]
    return paths + [k for k, v in record.items() if isinstance(v, str) and k != "legal_basis"]


def _set(record: dict[str, Any], path: str, value: Any) -> None:
    holder, name = record, path
    if path.startswith("envelope."):
        holder, name = record["envelope"], path.split(".", 1)[1]
    holder[name] = value


@given(h.commands, h.extreme_strings, st.data())
@settings(max_examples=200)
def test_an_extreme_string_is_a_valid_fact_or_refused_without_being_echoed(
    cmd: Command, text: str, data: st.DataObject
) -> None:
    path = data.draw(st.sampled_from(_text_paths(cmd)), label="field")
    record = h.plaintext(cmd)
    _set(record, path, text)
    message = h.raw_message(cmd.kind, record)
    classified(message)
    outcome, headers, value = ingest(message)
    personal = path == contract.SUBJECT_REF_FIELD or path in contract.personal_fields(cmd.kind)
    if outcome == "rejected":
        assert_nothing_personal(headers, value, [*h.PERSONAL_VALUES, *([text] if personal else [])])


@given(h.commands, st.sampled_from(["\ud800", "\udfff", "a\udc80b"]), st.data())
@settings(max_examples=30)
def test_a_lone_surrogate_is_undecodable(cmd: Command, text: str, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(_text_paths(cmd)), label="field")
    raw = text.encode("utf-8", "surrogatepass")
    result = classified(h.with_raw_text(cmd.kind, h.plaintext(cmd), path, raw))
    assert isinstance(result, Rejection) and result.reason == "undecodable"


@given(h.commands, h.extreme_micros)
@settings(max_examples=100)
def test_an_extreme_timestamp_is_a_valid_fact_or_refused(cmd: Command, micros: int) -> None:
    record = h.plaintext(cmd)
    record["envelope"]["occurred_at"] = micros
    message = h.raw_message(cmd.kind, record)
    result = classified(message)
    if isinstance(result, Rejection):
        assert result.reason in {"undecodable", "schema_invalid"}
    else:
        assert result.envelope.occurred_at.timestamp() * 1_000_000 == pytest.approx(micros)
    outcome, _, _ = ingest(message)
    assert outcome in {"recorded", "rejected"}
