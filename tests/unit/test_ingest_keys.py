"""Ingest key pairs in memory: first key, rotation, retention, destruction, and opening."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger.domain.rules import IngestKeyDestroyed, IngestKeyUnknown, IngestSealInvalid
from ledger.domain.values import Sealed
from ledger.keys import crypto_ingest
from ledger.keys.crypto import LocalKek, new_secret
from ledger.keys.ingest_keys import IngestKeyring, MemoryIngestKeyTable
from tests.builders import IP, REF

EVENT = "crm-4711"
WEEK = timedelta(days=7)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def table(clock: Clock) -> MemoryIngestKeyTable:
    return MemoryIngestKeyTable(clock)


@pytest.fixture
def kek() -> LocalKek:
    return LocalKek(new_secret(), "kek-1")


def keyring(table: MemoryIngestKeyTable, kek: LocalKek, clock: Clock) -> IngestKeyring:
    return IngestKeyring(table, kek, new_secret(), retention=WEEK, clock=clock)


@pytest.fixture
def ring(table: MemoryIngestKeyTable, kek: LocalKek, clock: Clock) -> IngestKeyring:
    return keyring(table, kek, clock)


def seal(ring: IngestKeyring, text: str = IP, field: str = "ip_address") -> Sealed:
    return crypto_ingest.seal(ring.public_key_for("acme"), EVENT, field, text)


def test_the_first_key_is_made_on_first_use_and_only_once(
    ring: IngestKeyring, table: MemoryIngestKeyTable, kek: LocalKek, clock: Clock
) -> None:
    assert table.rows() == []
    first = ring.current()
    assert ring.current() == first
    assert keyring(table, kek, clock).current() == first  # another process
    assert [r.state for r in table.rows()] == ["current"]


def test_the_private_key_is_stored_only_wrapped(
    ring: IngestKeyring, table: MemoryIngestKeyTable, kek: LocalKek
) -> None:
    row = ring.current()
    assert row.wrapped_private is not None and row.kek_id == "kek-1"
    raw = kek.unwrap(row.wrapped_private, b"ingest:" + row.key_id.encode())
    assert crypto_ingest.IngestPrivateKey(raw).public_key_column() == row.public_key
    assert raw not in row.wrapped_private


def test_a_tenant_key_document_holds_the_current_public_key_and_its_routing_key(
    ring: IngestKeyring,
) -> None:
    acme, globex = ring.public_key_for("acme"), ring.public_key_for("globex")
    assert acme.key_id == globex.key_id == ring.current().key_id
    column = ring.current().public_key
    assert acme.public_key == globex.public_key == column[:32]
    assert acme.hybrid_public_key == globex.hybrid_public_key == column[32:]
    assert len(column) == 32 + crypto_ingest.HYBRID_PUBLIC_BYTES
    assert acme.routing_key != globex.routing_key


def test_a_sealed_field_opens_through_the_keyring(ring: IngestKeyring) -> None:
    assert ring.open("acme", EVENT, "ip_address", seal(ring)) == IP


def test_rotation_retires_the_current_key_which_still_opens(
    ring: IngestKeyring, clock: Clock
) -> None:
    old_sealed = seal(ring, REF, "envelope.subject_ref")
    old = ring.current()
    clock.now += timedelta(days=1)
    new = ring.rotate()
    assert new.key_id != old.key_id
    assert {r.key_id: r.state for r in ring.key_pairs()} == {
        old.key_id: "retired",
        new.key_id: "current",
    }
    assert ring.public_key_for("acme").key_id == new.key_id
    assert ring.open("acme", EVENT, "envelope.subject_ref", old_sealed) == REF
    assert ring.open("acme", EVENT, "ip_address", seal(ring)) == IP


def test_a_retired_key_is_destroyed_once_the_retention_has_passed(
    ring: IngestKeyring, clock: Clock
) -> None:
    old_sealed = seal(ring)
    old = ring.current()
    ring.rotate()
    clock.now += WEEK - timedelta(seconds=1)
    assert ring.destroy_expired() == []
    assert ring.open("acme", EVENT, "ip_address", old_sealed) == IP
    clock.now += timedelta(seconds=1)
    assert ring.destroy_expired() == [old.key_id]
    destroyed = {r.key_id: r for r in ring.key_pairs()}[old.key_id]
    assert (destroyed.state, destroyed.wrapped_private) == ("destroyed", None)
    with pytest.raises(IngestKeyDestroyed) as refused:
        ring.open("acme", EVENT, "ip_address", old_sealed)
    assert refused.value.code == "ingest_key_destroyed"
    assert old.key_id in refused.value.detail
    assert ring.destroy_expired() == []  # once
    assert ring.current().state == "current"  # the current key is never due


def test_a_key_past_its_retention_is_refused_even_before_a_destroy_runs(
    ring: IngestKeyring, clock: Clock
) -> None:
    old_sealed = seal(ring)
    ring.open("acme", EVENT, "ip_address", old_sealed)  # its private key is now cached
    ring.rotate()
    clock.now += WEEK
    with pytest.raises(IngestKeyDestroyed):
        ring.open("acme", EVENT, "ip_address", old_sealed)


def test_a_destroy_by_another_process_is_seen_at_the_next_refresh(
    ring: IngestKeyring, table: MemoryIngestKeyTable, kek: LocalKek, clock: Clock
) -> None:
    old_sealed = seal(ring)
    ring.open("acme", EVENT, "ip_address", old_sealed)
    operator = keyring(table, kek, clock)
    operator.retention = timedelta(seconds=1)  # an operator with a shorter retention
    operator.rotate()
    clock.now += timedelta(seconds=1)
    assert operator.destroy_expired()
    assert ring.open("acme", EVENT, "ip_address", old_sealed) == IP  # cached, not refreshed
    ring.refresh_s = 0.0
    with pytest.raises(IngestKeyDestroyed):
        ring.open("acme", EVENT, "ip_address", old_sealed)


def test_a_key_made_by_another_process_is_found_at_once(
    ring: IngestKeyring, table: MemoryIngestKeyTable, kek: LocalKek, clock: Clock
) -> None:
    ring.current()
    operator = keyring(table, kek, clock)
    operator.rotate()
    sealed = crypto_ingest.seal(operator.public_key_for("acme"), EVENT, "ip_address", IP)
    assert ring.open("acme", EVENT, "ip_address", sealed) == IP


@pytest.mark.parametrize(
    ("key_id", "shown"),
    [("ik-20990101-00000000", "ik-20990101-00000000"), (REF, "(not a ledger key id)")],
)
def test_an_unknown_key_id_is_refused_and_echoed_only_in_the_ledger_format(
    ring: IngestKeyring, key_id: str, shown: str
) -> None:
    sealed = seal(ring)
    forged = Sealed(sealed.scheme, key_id, sealed.nonce, sealed.ciphertext)
    with pytest.raises(IngestKeyUnknown) as refused:
        ring.open("acme", EVENT, "ip_address", forged)
    assert refused.value.code == "ingest_key_unknown"
    assert shown in refused.value.detail
    assert REF not in refused.value.detail


def test_a_field_that_does_not_open_is_an_invalid_seal(ring: IngestKeyring) -> None:
    sealed = seal(ring)
    with pytest.raises(IngestSealInvalid) as moved:
        ring.open("globex", EVENT, "ip_address", sealed)
    assert moved.value.code == "ingest_seal_invalid"
    assert "ip_address" in moved.value.detail
    other_scheme = Sealed("A256GCM-subject-v1", REF, b"n" * 12, b"c" * 20)
    with pytest.raises(IngestSealInvalid) as refused:
        ring.open("acme", EVENT, "ip_address", other_scheme)
    assert REF not in refused.value.detail
