"""Sealing personal values, wrapping data keys, and reference digests."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from ledger.domain.values import Sealed
from ledger.keys import crypto
from tests.builders import IP, REF

SUBJECT = uuid.uuid4()


@pytest.fixture
def data_key() -> bytes:
    return crypto.new_data_key()


def test_sealed_value_opens_to_the_plaintext(data_key: bytes) -> None:
    sealed = crypto.seal(data_key, SUBJECT, "ip_address", IP)
    assert IP.encode() not in sealed.ciphertext
    assert sealed.scheme == crypto.SUBJECT_SCHEME
    assert sealed.key_id == str(SUBJECT)
    assert crypto.open_sealed(data_key, SUBJECT, "ip_address", sealed) == IP


def test_non_ascii_value_round_trips(data_key: bytes) -> None:
    name = "Zoë Ångström-Łukasiewicz"
    sealed = crypto.seal(data_key, SUBJECT, "evidence", name)
    assert crypto.open_sealed(data_key, SUBJECT, "evidence", sealed) == name


def test_sealing_twice_gives_different_ciphertexts(data_key: bytes) -> None:
    first = crypto.seal(data_key, SUBJECT, "ip_address", IP)
    second = crypto.seal(data_key, SUBJECT, "ip_address", IP)
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


def test_sealed_value_does_not_open_for_another_subject(data_key: bytes) -> None:
    sealed = crypto.seal(data_key, SUBJECT, "subject_ref", REF)
    with pytest.raises(crypto.CannotOpen):
        crypto.open_sealed(data_key, uuid.uuid4(), "subject_ref", sealed)


def test_sealed_value_does_not_open_as_another_field(data_key: bytes) -> None:
    sealed = crypto.seal(data_key, SUBJECT, "ip_address", IP)
    with pytest.raises(crypto.CannotOpen):
        crypto.open_sealed(data_key, SUBJECT, "user_agent", sealed)


def test_sealed_value_does_not_open_with_another_key(data_key: bytes) -> None:
    sealed = crypto.seal(data_key, SUBJECT, "ip_address", IP)
    with pytest.raises(crypto.CannotOpen):
        crypto.open_sealed(crypto.new_data_key(), SUBJECT, "ip_address", sealed)


@pytest.mark.parametrize("part", ["ciphertext", "nonce"])
@pytest.mark.parametrize("index", [0, -1])
def test_tampered_sealed_value_is_refused(data_key: bytes, part: str, index: int) -> None:
    sealed = crypto.seal(data_key, SUBJECT, "ip_address", IP)
    raw = bytearray(getattr(sealed, part))
    raw[index] ^= 0x01
    fields = dataclasses.asdict(sealed)
    fields[part] = bytes(raw)
    tampered = Sealed(**fields)
    with pytest.raises(crypto.CannotOpen):
        crypto.open_sealed(data_key, SUBJECT, "ip_address", tampered)


def test_unknown_scheme_is_refused(data_key: bytes) -> None:
    sealed = crypto.seal(data_key, SUBJECT, "ip_address", IP)
    with pytest.raises(crypto.CannotOpen, match="scheme"):
        crypto.open_sealed(data_key, SUBJECT, "ip_address", dataclasses.replace(sealed, scheme="x"))


def test_cannot_open_error_does_not_echo_the_value(data_key: bytes) -> None:
    sealed = Sealed(crypto.SUBJECT_SCHEME, str(SUBJECT), b"\x00" * 12, IP.encode() * 2)
    with pytest.raises(crypto.CannotOpen) as raised:
        crypto.open_sealed(data_key, SUBJECT, "ip_address", sealed)
    assert IP not in str(raised.value)


def test_kek_wraps_and_unwraps_a_data_key(data_key: bytes) -> None:
    kek = crypto.LocalKek(crypto.new_secret(), "kek-1")
    context = crypto.subject_context(SUBJECT)
    wrapped = kek.wrap(data_key, context)
    assert data_key not in wrapped
    assert kek.unwrap(wrapped, context) == data_key


def test_wrapped_key_does_not_unwrap_with_another_kek(data_key: bytes) -> None:
    context = crypto.subject_context(SUBJECT)
    wrapped = crypto.LocalKek(crypto.new_secret(), "kek-1").wrap(data_key, context)
    with pytest.raises(crypto.CannotOpen):
        crypto.LocalKek(crypto.new_secret(), "kek-1").unwrap(wrapped, context)


def test_wrapped_key_does_not_unwrap_under_another_kek_id(data_key: bytes) -> None:
    secret = crypto.new_secret()
    context = crypto.subject_context(SUBJECT)
    wrapped = crypto.LocalKek(secret, "kek-1").wrap(data_key, context)
    with pytest.raises(crypto.CannotOpen):
        crypto.LocalKek(secret, "kek-2").unwrap(wrapped, context)


def test_wrapped_key_does_not_unwrap_for_another_subject(data_key: bytes) -> None:
    kek = crypto.LocalKek(crypto.new_secret(), "kek-1")
    wrapped = kek.wrap(data_key, crypto.subject_context(SUBJECT))
    with pytest.raises(crypto.CannotOpen):
        kek.unwrap(wrapped, crypto.subject_context(uuid.uuid4()))


def test_tampered_wrapped_key_is_refused(data_key: bytes) -> None:
    kek = crypto.LocalKek(crypto.new_secret(), "kek-1")
    context = crypto.subject_context(SUBJECT)
    wrapped = bytearray(kek.wrap(data_key, context))
    wrapped[-1] ^= 0x80
    with pytest.raises(crypto.CannotOpen):
        kek.unwrap(bytes(wrapped), context)


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_kek_must_be_32_bytes(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        crypto.LocalKek(b"k" * length, "kek-1")


def test_reference_digest_is_deterministic_per_tenant_and_reference() -> None:
    key = crypto.new_secret()
    digest = crypto.reference_digest(key, "acme", REF)
    assert crypto.reference_digest(key, "acme", REF) == digest
    assert len(digest) == 32
    assert REF.encode() not in digest


def test_reference_digest_differs_across_tenants_references_and_keys() -> None:
    key = crypto.new_secret()
    digests = {
        crypto.reference_digest(key, "acme", REF),
        crypto.reference_digest(key, "globex", REF),
        crypto.reference_digest(key, "acme", "bob@example.org"),
        crypto.reference_digest(crypto.new_secret(), "acme", REF),
        # The separator keeps (tenant, reference) pairs apart when concatenations agree.
        crypto.reference_digest(key, "acme-", "x"),
        crypto.reference_digest(key, "acme", "-x"),
    }
    assert len(digests) == 6
