"""A burst of hostile messages among valid ones, through a real broker into PostgreSQL."""

from __future__ import annotations

import random
import time

import pytest

from consumers.ingest import MAX_MESSAGE_BYTES, IngestConsumer
from ledger.application.service import Ledger
from ledger.client import LedgerClient
from ledger.process.settings import Settings
from tests import builders as b
from tests import hostile as h
from tests.integration.test_pipeline import client, ingest, ledger, recorded, send
from tests.kafka_helpers import read_topic, wait_until
from tests.sealing import sealed_message

__all__ = ["client", "ingest", "ledger"]  # fixtures
pytestmark = pytest.mark.fuzz
NO_STALL_S = 30.0  # the last valid message is recorded this soon after the burst was sent


def hostile_messages(ledger: Ledger) -> list[bytes]:
    """One of each kind of hostile message, built from valid sealed ones."""
    rng = random.Random(20260523)
    key = ledger.ingest_keys.public_key_for(b.TENANT)
    valid = sealed_message(b.grant("mallory@example.com"), key)
    flipped = bytearray(valid)
    flipped[len(valid) // 2] ^= 0xFF
    plain = h.plaintext(b.hold("mallory@example.com"))
    surrogate = h.with_raw_text("LegalHoldPlaced", plain, "hold_reference", b"\xed\xa0\x80")
    too_far = h.plaintext(b.grant("mallory@example.com"))
    too_far["envelope"]["occurred_at"] = h.INT64[1]
    return [
        rng.randbytes(64),
        b"\xc3\x01" + rng.randbytes(40),
        valid[: len(valid) - 7],
        bytes(flipped),
        valid[:2] + b"\x00" * 8 + valid[10:],
        valid + b"\x00" * (MAX_MESSAGE_BYTES + 1 - len(valid)),
        h.with_wrong_type("ConsentGranted", too_far, "purpose", "long", 7, lie=False),
        h.with_wrong_type("ConsentGranted", too_far, "purpose", "long", 7, lie=True),
        h.raw_message("LegalHoldPlaced", {**plain, "hold_reference": "case\x00"}),
        surrogate,
        h.raw_message("ConsentGranted", too_far),
    ]


def test_hostile_messages_are_rejected_and_the_valid_ones_around_them_recorded(
    ledger: Ledger, client: LedgerClient, ingest: IngestConsumer, settings: Settings
) -> None:
    purpose = send(client, b.define_purpose())
    wait_until(lambda: recorded(ledger, purpose) == 1, what="purpose recorded")
    hostile, valid_ids = hostile_messages(ledger), []
    for rounds in range(3):
        for i, message in enumerate(hostile):
            client.send_raw(message)
            valid_ids.append(client.send_command(b.grant(f"user-{rounds}-{i}@example.com")))
    client.flush()
    sent_at = time.monotonic()

    wait_until(
        lambda: recorded(ledger, valid_ids) == len(valid_ids),
        timeout=NO_STALL_S,
        what="every valid message recorded",
    )
    assert time.monotonic() - sent_at < NO_STALL_S
    expected = 3 * len(hostile)
    rejected = read_topic(
        settings.require_kafka(), settings.topics.rejected, until=lambda r: len(r) >= expected
    )
    assert len(rejected) == expected
    reasons = [dict(r.headers)["reason"].decode() for r in rejected]
    assert set(reasons) <= h.documented_reasons() - {"internal_error"}
    assert {"undecodable", "unknown_schema", "message_too_large", "schema_invalid"} <= set(reasons)
    for record in rejected:
        headers = dict(record.headers)
        assert headers["detail"]
        assert b"mallory@example.com" not in headers["detail"]
