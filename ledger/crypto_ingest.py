"""Sealed ingest: producers encrypt personal fields to the ledger's public key.

The sibling of :mod:`ledger.crypto` (subject data keys); the two are the only modules that do
cryptography.

- **Scheme** ``HPKE-X25519-ingest-v1``: RFC 9180 HPKE, base mode, single shot, with the suite
  DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, as ``cryptography`` implements it. A
  producer seals each personal field to the ledger's current ingest public key; only the
  ledger, which holds the private key, can open it. Producers hold no secret.
- **Binding.** HPKE's ``info`` is the scheme, the key id, the tenant, the event id and the
  field (each part length-prefixed), so a sealed value opens only in the field, tenant and
  event it was sealed for. Copied into another message it fails authentication instead of
  being recorded under another tenant or subject.
- **Wire form** (``compliance.Sealed``): ``key_id`` names the ingest key pair, ``nonce``
  holds HPKE's encapsulated key (32 bytes), ``ciphertext`` the AEAD ciphertext and tag.
- **What it does not do:** authenticate the sender. Anyone with the public key can seal;
  who may write to the ingest topic is decided by the broker's access control.

Message keys on the ingest topic (:func:`routing_bucket`) are here too: they are derived
from the subject reference, so they are computed with a keyed hash, never in clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from ledger.crypto import CannotOpen
from ledger.domain.values import Sealed

INGEST_SCHEME = "HPKE-X25519-ingest-v1"
ENC_BYTES = 32  # X25519 encapsulated key
ROUTING_BITS = 16
_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)


@dataclass(frozen=True)
class IngestPublicKey:
    """What a producer of one tenant needs to seal: the ledger's current public key and the
    tenant's routing key (``GET /v1/ingest-key``, ``ledger ingest-keys show``)."""

    tenant: str
    key_id: str
    public_key: bytes  # raw X25519, 32 bytes
    routing_key: bytes
    algorithm: str = INGEST_SCHEME

    def __post_init__(self) -> None:
        if self.algorithm != INGEST_SCHEME:
            raise ValueError(f"unsupported ingest key algorithm {self.algorithm!r}")
        if len(self.public_key) != 32 or len(self.routing_key) != 32:
            raise ValueError("an ingest public key and a routing key are 32 bytes each")

    def as_json(self) -> dict[str, str]:
        return {
            "tenant": self.tenant,
            "key_id": self.key_id,
            "algorithm": self.algorithm,
            "public_key": base64.b64encode(self.public_key).decode(),
            "routing_key": base64.b64encode(self.routing_key).decode(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> IngestPublicKey:
        """Raises ValueError if a field is missing or malformed."""
        try:
            return cls(
                tenant=str(data["tenant"]),
                key_id=str(data["key_id"]),
                public_key=base64.b64decode(str(data["public_key"]), validate=True),
                routing_key=base64.b64decode(str(data["routing_key"]), validate=True),
                algorithm=str(data["algorithm"]),
            )
        except (KeyError, binascii.Error) as exc:
            raise ValueError(f"not an ingest key document: {type(exc).__name__}") from None


def _info(key_id: str, tenant: str, event_id: str, field: str) -> bytes:
    parts = (INGEST_SCHEME, key_id, tenant, event_id, field)
    return b"".join(len(p.encode()).to_bytes(2, "big") + p.encode() for p in parts)


def seal(key: IngestPublicKey, event_id: str, field: str, plaintext: str) -> Sealed:
    """Seals one personal field of one event of ``key.tenant``."""
    public = x25519.X25519PublicKey.from_public_bytes(key.public_key)
    info = _info(key.key_id, key.tenant, event_id, field)
    sealed = _SUITE.encrypt(plaintext.encode(), public, info=info)
    return Sealed(INGEST_SCHEME, key.key_id, sealed[:ENC_BYTES], sealed[ENC_BYTES:])


class IngestPrivateKey:
    """An ingest private key in memory, parsed once (parsing costs half as much as an open).
    It is stored only wrapped by the KEK; :meth:`raw` is for wrapping it."""

    def __init__(self, raw: bytes) -> None:
        self._key = x25519.X25519PrivateKey.from_private_bytes(raw)

    @classmethod
    def generate(cls) -> IngestPrivateKey:
        return cls(x25519.X25519PrivateKey.generate().private_bytes_raw())

    def raw(self) -> bytes:
        return self._key.private_bytes_raw()

    def public_key(self) -> bytes:
        return self._key.public_key().public_bytes_raw()

    def open(self, tenant: str, event_id: str, field: str, sealed: Sealed) -> str:
        """Raises CannotOpen for another scheme, a wrong key, binding or a tampered value."""
        if sealed.scheme != INGEST_SCHEME:
            raise CannotOpen("not sealed with the ingest scheme")
        info = _info(sealed.key_id, tenant, event_id, field)
        try:
            plain = _SUITE.decrypt(sealed.nonce + sealed.ciphertext, self._key, info=info)
            return plain.decode()
        except (InvalidTag, UnicodeDecodeError, ValueError):
            raise CannotOpen(f"sealed field {field!r} does not open with this key") from None


def routing_key(lookup_key: bytes, tenant: str) -> bytes:
    """A tenant's routing key, derived from the ledger's lookup key.

    Domain-separated from reference digests (``HMAC(lookup_key, tenant \\0 ref)``): this
    message holds no NUL byte, so it can never equal one of theirs.
    """
    return hmac.new(lookup_key, b"ingest-routing:" + tenant.encode(), hashlib.sha256).digest()


def routing_bucket(routing_key: bytes | None, tenant: str, subject_ref: str) -> int:
    """One of 2**16 buckets for a subject: the ingest message key, so that one subject's
    events share a partition.

    With the tenant's routing key it is a truncated HMAC: a reader of the topic without that
    key learns nothing about references from message keys. Holders of the routing key (the
    tenant's own systems) can compute a guessed reference's bucket, but each bucket is shared
    by a 65,536th of all references, so a match is weak evidence, not confirmation. Message
    keys still show how many events fall in each bucket, and when.

    Without a routing key (a producer sending personal fields in clear, whose message values
    hold the reference anyway) it is an unkeyed hash, truncated the same way.
    """
    message = tenant.encode() + b"\x00" + subject_ref.encode()
    if routing_key is None:
        digest = hashlib.sha256(message).digest()
    else:
        digest = hmac.new(routing_key, message, hashlib.sha256).digest()
    return int.from_bytes(digest[:2], "big")
