"""Envelope encryption for crypto-shredding. With its sibling :mod:`ledger.keys.crypto_ingest`
(producers sealing to the ledger's public key), the only modules that do cryptography.

- Each subject has its own 256-bit **data key**. Personal fields are sealed with it using
  AES-256-GCM; the associated data binds a ciphertext to its subject and field, so a sealed
  value cannot be moved to another subject or field undetected.
- Data keys are stored only **wrapped** (AES-256-GCM) by a key-encryption key (KEK) from
  configuration; the wrap's associated data binds it to the subject id and KEK id. A KMS can
  implement :class:`KeyEncryptionKey`.
- The upstream reference is looked up through an HMAC-SHA256 **digest** under a separate
  lookup key, so the lookup table holds no reference in clear.

No key material is ever put in an event. Deleting a subject's wrapped key makes every sealed
value of that subject unreadable wherever it was copied.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Protocol
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.domain.values import Sealed

SUBJECT_SCHEME = "A256GCM-subject-v1"
NONCE_BYTES = 12


class CannotOpen(ValueError):
    """A sealed value or wrapped key failed authentication (wrong key, or tampered)."""


class KekNotConfigured(CannotOpen):
    """A wrap names a KEK version this process does not hold (destroyed, or not configured)."""


class KeyEncryptionKey(Protocol):
    """Wraps and unwraps data keys. ``key_id`` names the KEK version new wraps are made with;
    ``unwrap`` takes the version the wrap was made with (``kek_id``, stored beside it), or
    assumes ``key_id`` when it is not given."""

    key_id: str

    def wrap(self, data_key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes, *, kek_id: str | None = None) -> bytes: ...


class LocalKek:
    """A KEK held in process memory, from configuration (``LEDGER_KEK``)."""

    def __init__(self, key: bytes, key_id: str) -> None:
        if len(key) != 32:
            raise ValueError("a KEK is 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = key_id

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, self._aad(context))

    def unwrap(self, wrapped: bytes, context: bytes, *, kek_id: str | None = None) -> bytes:
        if kek_id is not None and kek_id != self.key_id:
            raise KekNotConfigured(f"wrapped under KEK {kek_id!r}, this one is {self.key_id!r}")
        try:
            return self._aead.decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], self._aad(context)
            )
        except InvalidTag:
            raise CannotOpen("wrapped data key does not open under this KEK") from None

    def _aad(self, context: bytes) -> bytes:
        return self.key_id.encode() + b"|" + context


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def new_secret() -> bytes:
    return os.urandom(32)


def subject_context(subject_id: UUID) -> bytes:
    return b"subject:" + subject_id.bytes


def webhook_secret_context(tenant: str, name: str) -> bytes:
    """What a webhook endpoint's signing secret is wrapped under: its tenant and name."""
    return b"webhook:" + tenant.encode() + b"\x00" + name.encode()


def _field_aad(subject_id: UUID, field: str) -> bytes:
    return subject_id.bytes + b"|" + field.encode()


def seal(data_key: bytes, subject_id: UUID, field: str, plaintext: str) -> Sealed:
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext.encode(), _field_aad(subject_id, field))
    return Sealed(SUBJECT_SCHEME, str(subject_id), nonce, ciphertext)


def open_sealed(data_key: bytes, subject_id: UUID, field: str, sealed: Sealed) -> str:
    if sealed.scheme != SUBJECT_SCHEME:
        raise CannotOpen(f"unsupported scheme {sealed.scheme!r}")
    try:
        plain = AESGCM(data_key).decrypt(
            sealed.nonce, sealed.ciphertext, _field_aad(subject_id, field)
        )
    except InvalidTag:
        raise CannotOpen(f"sealed field {field!r} does not open with this key") from None
    return plain.decode()


def reference_digest(lookup_key: bytes, tenant: str, subject_ref: str) -> bytes:
    """HMAC-SHA256 of the tenant and upstream reference: the lookup key for a subject."""
    message = tenant.encode() + b"\x00" + subject_ref.encode()
    return hmac.new(lookup_key, message, hashlib.sha256).digest()
