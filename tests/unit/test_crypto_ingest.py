"""The sealed-ingest primitive: HPKE sealing bound to field, tenant and event; routing keys."""

from __future__ import annotations

import dataclasses
import os

import pytest

from ledger.domain.values import Sealed
from ledger.keys import crypto, crypto_ingest
from ledger.keys.crypto_ingest import INGEST_SCHEME, IngestPrivateKey, IngestPublicKey
from tests.builders import IP, REF

EVENT = "3f1c2a4e-0b7d-4e57-9a55-8f3c1d2e4b6a"


@pytest.fixture
def private() -> IngestPrivateKey:
    return IngestPrivateKey.generate()


@pytest.fixture
def key(private: IngestPrivateKey) -> IngestPublicKey:
    return IngestPublicKey("acme", "ik-20260101-0a1b2c3d", private.public_key(), b"r" * 32)


def test_a_sealed_field_opens_to_its_plaintext(
    private: IngestPrivateKey, key: IngestPublicKey
) -> None:
    sealed = crypto_ingest.seal(key, EVENT, "ip_address", IP)
    assert (sealed.scheme, sealed.key_id) == (INGEST_SCHEME, key.key_id)
    assert len(sealed.nonce) == 32  # HPKE's encapsulated key
    assert IP.encode() not in sealed.nonce + sealed.ciphertext
    assert private.open("acme", EVENT, "ip_address", sealed) == IP


def test_non_ascii_text_round_trips(private: IngestPrivateKey, key: IngestPublicKey) -> None:
    name = "Zoë Ångström-Łukasiewicz"
    sealed = crypto_ingest.seal(key, EVENT, "evidence", name)
    assert private.open("acme", EVENT, "evidence", sealed) == name


def test_sealing_twice_gives_different_ciphertexts(key: IngestPublicKey) -> None:
    first = crypto_ingest.seal(key, EVENT, "envelope.subject_ref", REF)
    second = crypto_ingest.seal(key, EVENT, "envelope.subject_ref", REF)
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


@pytest.mark.parametrize(
    ("tenant", "event_id", "field"),
    [
        ("globex", EVENT, "ip_address"),  # moved to another tenant
        ("acme", "another-event", "ip_address"),  # moved to another event
        ("acme", EVENT, "user_agent"),  # moved to another field
        ("acme", EVENT, "envelope.subject_ref"),
    ],
)
def test_a_sealed_field_opens_only_where_it_was_sealed_for(
    private: IngestPrivateKey, key: IngestPublicKey, tenant: str, event_id: str, field: str
) -> None:
    sealed = crypto_ingest.seal(key, EVENT, "ip_address", IP)
    with pytest.raises(crypto.CannotOpen):
        private.open(tenant, event_id, field, sealed)


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: dataclasses.replace(s, ciphertext=_flip(s.ciphertext, 0)),
        lambda s: dataclasses.replace(s, ciphertext=_flip(s.ciphertext, len(s.ciphertext) - 1)),
        lambda s: dataclasses.replace(s, ciphertext=s.ciphertext[:-1]),
        lambda s: dataclasses.replace(s, nonce=_flip(s.nonce, 5)),
        lambda s: dataclasses.replace(s, key_id="ik-20260101-ffffffff"),
        lambda s: dataclasses.replace(s, nonce=b"", ciphertext=b""),
    ],
    ids=["ciphertext", "tag", "truncated", "encapsulated-key", "key-id", "empty"],
)
def test_a_tampered_field_does_not_open(
    private: IngestPrivateKey, key: IngestPublicKey, tamper: object
) -> None:
    sealed = crypto_ingest.seal(key, EVENT, "ip_address", IP)
    with pytest.raises(crypto.CannotOpen):
        private.open("acme", EVENT, "ip_address", tamper(sealed))  # type: ignore[operator]


def test_a_field_does_not_open_with_another_private_key(key: IngestPublicKey) -> None:
    sealed = crypto_ingest.seal(key, EVENT, "ip_address", IP)
    with pytest.raises(crypto.CannotOpen):
        IngestPrivateKey.generate().open("acme", EVENT, "ip_address", sealed)


def test_a_subject_sealed_value_is_not_an_ingest_seal(private: IngestPrivateKey) -> None:
    subject_sealed = Sealed(crypto.SUBJECT_SCHEME, "k", b"\x00" * 12, b"\x01" * 32)
    with pytest.raises(crypto.CannotOpen):
        private.open("acme", EVENT, "ip_address", subject_sealed)


def test_a_private_key_survives_its_raw_form(
    private: IngestPrivateKey, key: IngestPublicKey
) -> None:
    sealed = crypto_ingest.seal(key, EVENT, "note", "alice.private@example.org")
    again = IngestPrivateKey(private.raw())
    assert again.public_key() == private.public_key()
    assert again.open("acme", EVENT, "note", sealed) == "alice.private@example.org"


def test_the_key_document_round_trips_through_json(key: IngestPublicKey) -> None:
    document = key.as_json()
    assert document["algorithm"] == INGEST_SCHEME
    assert IngestPublicKey.from_json(document) == key


@pytest.mark.parametrize(
    "change",
    [
        {"algorithm": "RSA-OAEP"},
        {"public_key": "not base64!"},
        {"public_key": "AAAA"},
        {"routing_key": None},
    ],
)
def test_a_bad_key_document_is_refused(key: IngestPublicKey, change: dict[str, object]) -> None:
    document: dict[str, object] = {**key.as_json(), **change}
    if document["routing_key"] is None:
        del document["routing_key"]
    with pytest.raises(ValueError):
        IngestPublicKey.from_json(document)


def test_routing_keys_are_per_tenant_and_apart_from_reference_digests() -> None:
    lookup_key = crypto.new_secret()
    acme = crypto_ingest.routing_key(lookup_key, "acme")
    assert acme == crypto_ingest.routing_key(lookup_key, "acme")
    assert acme != crypto_ingest.routing_key(lookup_key, "globex")
    assert acme != crypto_ingest.routing_key(crypto.new_secret(), "acme")
    # "ingest-routing" is a valid tenant code; the separators keep the two apart.
    assert acme != crypto.reference_digest(lookup_key, "ingest-routing", "acme")


def test_a_routing_bucket_is_stable_per_subject_and_depends_on_the_key() -> None:
    routing = b"r" * 32
    bucket = crypto_ingest.routing_bucket(routing, "acme", REF)
    assert bucket == crypto_ingest.routing_bucket(routing, "acme", REF)
    assert 0 <= bucket < 2**crypto_ingest.ROUTING_BITS
    refs = [f"user-{i}@example.com" for i in range(200)]
    keyed = [crypto_ingest.routing_bucket(routing, "acme", r) for r in refs]
    unkeyed = [crypto_ingest.routing_bucket(None, "acme", r) for r in refs]
    other_key = [crypto_ingest.routing_bucket(b"s" * 32, "acme", r) for r in refs]
    assert len(set(keyed)) > 190  # spread over the buckets
    assert keyed != unkeyed
    assert keyed != other_key


def test_session_nonces_are_not_repeated_and_a_forked_child_draws_its_own() -> None:
    buffer = crypto_ingest._NonceBuffer(count=16)
    drawn = [buffer.next() for _ in range(1000)]  # many refills
    assert len(set(drawn)) == 1000 and {len(n) for n in drawn} == {12}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what would it seal with next?
        os.write(write, crypto_ingest._NONCES.next())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 12) != crypto_ingest._NONCES.next()
