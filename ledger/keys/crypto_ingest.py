"""Sealed ingest: producers encrypt personal fields to the ledger's public key.

The sibling of :mod:`ledger.keys.crypto` (subject data keys); the two are the only modules that do
cryptography. Producers hold no secret that opens anything already sent by someone else.

**v2, sessions** (``docs/contract.md`` "Sealed ingest" is the normative text):

- A producer starts a *session* per tenant: a random 32-byte secret sealed once with RFC 9180
  HPKE (base mode, single shot) to the ledger's ingest key, with the KEM the session scheme
  names: ``HPKE-MLKEM768X25519-session-v2`` (hybrid ML-KEM-768 + X25519, the default) or
  ``HPKE-X25519-session-v2``. HPKE's ``info`` binds the secret to the scheme, the key id,
  the tenant and the session's start.
- Every message carries the session header (``compliance.SealSession``: scheme, key id,
  start, the sealed secret and the message's number in the session), so it opens on its own.
- Each personal field is sealed with AES-256-GCM (random 12-byte nonce, no AAD) under
  ``HKDF-SHA256(secret, salt = "", info = part(field scheme) | part(key id) | part(tenant) |
  part(event id) | part(field) | u64(message number), 32)``: a value opens only in the field,
  event, tenant and message it was sealed for. Its ``compliance.Sealed`` has scheme
  ``A256GCM-ingest-session-v2``, the key id, the nonce and the ciphertext with its tag.
- A session is bounded: the producer starts a new one after ``max_messages`` messages or
  ``max_seconds``; the ledger refuses messages beyond its own limits.

So the key agreement (50 to 70 µs) is paid once per session, and a field costs one HMAC and one
AES-GCM call.

**v1** ``HPKE-X25519-ingest-v1`` (still accepted while the ingest retention lasts): every
field is its own single-shot HPKE seal, DHKEM(X25519) / HKDF-SHA256 / AES-256-GCM, with
``info`` = scheme, key id, tenant, event id and field; ``nonce`` holds HPKE's encapsulated
key.

**What neither does:** authenticate the sender. Anyone with the public key can seal; who may
write to the ingest topic is decided by the broker's access control.

Message keys on the ingest topic (:func:`routing_bucket`) are here too: they are derived
from the subject reference, so they are computed with a keyed hash, never in clear.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import (
    AEAD,
    KDF,
    KEM,
    MLKEM768X25519PrivateKey,
    MLKEM768X25519PublicKey,
    Suite,
)

from ledger.domain.values import Sealed
from ledger.keys.crypto import CannotOpen

INGEST_SCHEME = "HPKE-X25519-ingest-v1"
ENC_BYTES = 32  # X25519 encapsulated key
ROUTING_BITS = 16
_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)

# v2: sessions.
SESSION_X25519 = "HPKE-X25519-session-v2"
SESSION_HYBRID = "HPKE-MLKEM768X25519-session-v2"
SESSION_SCHEMES = (SESSION_HYBRID, SESSION_X25519)
FIELD_SCHEME = "A256GCM-ingest-session-v2"
KEY_ALGORITHM_V2 = "HPKE-X25519+MLKEM768X25519-ingest-v2"
"""Ingest key pairs made since v2: an X25519 key (v1 and ``HPKE-X25519-session-v2``) and a
separate ML-KEM-768 + X25519 key (``HPKE-MLKEM768X25519-session-v2``)."""
SECRET_BYTES = 32
NONCE_BYTES = 12
HYBRID_PUBLIC_BYTES = 1184 + 32
_SESSION_SUITES = {
    SESSION_X25519: _SUITE,
    SESSION_HYBRID: Suite(KEM.MLKEM768_X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM),
}
_ZERO_SALT = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)

DEFAULT_SESSION_MESSAGES = 10_000
DEFAULT_SESSION_SECONDS = 600.0


@dataclass(frozen=True)
class IngestPublicKey:
    """What a producer of one tenant needs to seal: the ledger's current public keys and the
    tenant's routing key (``GET /v1/ingest-key``, ``ledger ingest-keys show``).

    ``algorithm`` names what ``public_key`` (raw X25519) is for, and stays
    ``HPKE-X25519-ingest-v1`` so that v1 clients keep working; ``hybrid_public_key``
    (ML-KEM-768 encapsulation key, then X25519, 1,216 bytes) is there on keys made since v2.
    """

    tenant: str
    key_id: str
    public_key: bytes  # raw X25519, 32 bytes
    routing_key: bytes
    algorithm: str = INGEST_SCHEME
    hybrid_public_key: bytes | None = None

    def __post_init__(self) -> None:
        if self.algorithm != INGEST_SCHEME:
            raise ValueError(f"unsupported ingest key algorithm {self.algorithm!r}")
        if len(self.public_key) != 32 or len(self.routing_key) != 32:
            raise ValueError("an ingest public key and a routing key are 32 bytes each")
        if self.hybrid_public_key is not None and len(self.hybrid_public_key) != (
            HYBRID_PUBLIC_BYTES
        ):
            raise ValueError(f"a hybrid ingest public key is {HYBRID_PUBLIC_BYTES} bytes")

    def as_json(self) -> dict[str, str]:
        out = {
            "tenant": self.tenant,
            "key_id": self.key_id,
            "algorithm": self.algorithm,
            "public_key": base64.b64encode(self.public_key).decode(),
            "routing_key": base64.b64encode(self.routing_key).decode(),
        }
        if self.hybrid_public_key is not None:
            out["hybrid_public_key"] = base64.b64encode(self.hybrid_public_key).decode()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> IngestPublicKey:
        """Raises ValueError if a field is missing or malformed."""
        try:
            hybrid = data.get("hybrid_public_key")
            return cls(
                tenant=str(data["tenant"]),
                key_id=str(data["key_id"]),
                public_key=base64.b64decode(str(data["public_key"]), validate=True),
                routing_key=base64.b64decode(str(data["routing_key"]), validate=True),
                algorithm=str(data["algorithm"]),
                hybrid_public_key=None
                if hybrid is None
                else base64.b64decode(str(hybrid), validate=True),
            )
        except (KeyError, binascii.Error) as exc:
            raise ValueError(f"not an ingest key document: {type(exc).__name__}") from None


def _part(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


@functools.lru_cache(maxsize=256)
def field_part(field: str) -> bytes:
    """``part(field)``; field names are few."""
    return _part(field)


def _info(key_id: str, tenant: str, event_id: str, field: str) -> bytes:
    return b"".join(_part(p) for p in (INGEST_SCHEME, key_id, tenant, event_id, field))


def seal(key: IngestPublicKey, event_id: str, field: str, plaintext: str) -> Sealed:
    """Seals one personal field of one event of ``key.tenant`` the v1 way (one HPKE seal per
    field). Kept for tests of the v1 path; producers use :class:`SessionSealer`."""
    public = x25519.X25519PublicKey.from_public_bytes(key.public_key)
    info = _info(key.key_id, key.tenant, event_id, field)
    sealed = _SUITE.encrypt(plaintext.encode(), public, info=info)
    return Sealed(INGEST_SCHEME, key.key_id, sealed[:ENC_BYTES], sealed[ENC_BYTES:])


# v2 sessions.


@dataclass(frozen=True)
class SealSession:
    """The session header every v2 message carries (``compliance.SealSession``)."""

    scheme: str
    key_id: str
    started_at_ms: int  # milliseconds since the Unix epoch, UTC
    secret: bytes  # HPKE encapsulated key, then the sealed 32-byte session secret
    message: int  # this message's number in the session, from 0

    def as_record(self) -> dict[str, object]:
        return {
            "scheme": self.scheme,
            "key_id": self.key_id,
            "started_at": self.started_at_ms,  # fastavro writes an int as it is
            "secret": self.secret,
            "message": self.message,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> SealSession:
        started = record["started_at"]
        if isinstance(started, datetime):
            started_ms = (started - _EPOCH) // _MILLISECOND
        else:
            started_ms = int(started)  # type: ignore[call-overload]
        return cls(
            scheme=str(record["scheme"]),
            key_id=str(record["key_id"]),
            started_at_ms=started_ms,
            secret=bytes(record["secret"]),  # type: ignore[call-overload]
            message=int(record["message"]),  # type: ignore[call-overload]
        )


def session_info(scheme: str, key_id: str, tenant: str, started_at_ms: int) -> bytes:
    """HPKE ``info`` of a session secret."""
    return _part(scheme) + _part(key_id) + _part(tenant) + struct.pack(">Q", started_at_ms)


def field_info(key_id: str, tenant: str, event_id: str, field: str, message: int) -> bytes:
    """HKDF ``info`` of one field's key."""
    return FieldInfo(key_id, tenant, message).of(event_id, field)


class FieldInfo:
    """The ``info`` of every field key of one message (sealing or opening it): the parts
    shared by its fields are packed once."""

    __slots__ = ("_event", "_prefix", "_suffix")

    def __init__(self, key_id: str, tenant: str, message: int) -> None:
        self._prefix = _part(FIELD_SCHEME) + _part(key_id) + _part(tenant)
        self._suffix = struct.pack(">Q", message)
        self._event: tuple[str, bytes] = ("", b"")

    def of(self, event_id: str, field: str) -> bytes:
        if self._event[0] != event_id or not self._event[1]:
            self._event = (event_id, self._prefix + _part(event_id))
        return self._event[1] + field_part(field) + self._suffix


def session_prk(secret: bytes) -> bytes:
    """HKDF-Extract(salt = "", secret): what the ledger caches per opened session."""
    return hmac.digest(_ZERO_SALT, secret, "sha256")


def field_key(prk: bytes | Any, info: bytes) -> bytes:
    """HKDF-Expand(prk, info, 32): one HMAC block. ``prk`` may be :func:`prk_hmac`'s
    object for it, which is cheaper and keeps the GIL (``hmac.digest`` releases it, and in a
    producer the Kafka thread then takes it for a while)."""
    if isinstance(prk, bytes):
        return hmac.digest(prk, info + b"\x01", "sha256")
    mac = prk.copy()
    mac.update(info + b"\x01")
    return bytes(mac.digest())


def prk_hmac(prk: bytes) -> Any:
    """An HMAC-SHA256 keyed with ``prk``, to copy for each :func:`field_key`."""
    return hmac.new(prk, digestmod="sha256")


def seal_field(prk: bytes | Any, info: bytes, plaintext: str, nonce: bytes | None = None) -> bytes:
    """nonce ‖ ciphertext ‖ tag of one field. ``nonce`` is random unless given (vectors)."""
    nonce = _NONCES.next() if nonce is None else nonce
    return nonce + AESGCM(field_key(prk, info)).encrypt(nonce, plaintext.encode(), None)


class _NonceBuffer:
    """Random nonces drawn from the OS 4,096 at a time: one ``os.urandom`` call per field
    cost more than the AES-GCM seal itself (it releases the GIL, and a producer's Kafka
    thread then holds it). Each field key is used once anyway; the random nonce only guards
    against a producer that reuses a message number."""

    def __init__(self, count: int = 4096) -> None:
        self._count = count
        self._buffer = b""
        self._offset = 0
        self._lock = threading.Lock()

    def next(self) -> bytes:
        with self._lock:
            if self._offset >= len(self._buffer):
                self._buffer = os.urandom(NONCE_BYTES * self._count)
                self._offset = 0
            nonce = self._buffer[self._offset : self._offset + NONCE_BYTES]
            self._offset += NONCE_BYTES
            return nonce

    def reset(self) -> None:
        """Forgets the buffered nonces (in a forked child, which must not share them)."""
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0


_NONCES = _NonceBuffer()
os.register_at_fork(after_in_child=_NONCES.reset)


def open_field(prk: bytes | Any, info: bytes, nonce: bytes, ciphertext: bytes) -> str:
    """Raises CannotOpen if the value was tampered with or sealed for another binding."""
    if len(nonce) != NONCE_BYTES:
        raise CannotOpen("a session-sealed field has a 12-byte nonce")
    try:
        return AESGCM(field_key(prk, info)).decrypt(nonce, ciphertext, None).decode()
    except (InvalidTag, UnicodeDecodeError, ValueError):
        raise CannotOpen("sealed field does not open in this session") from None


class MessageSealer:
    """Seals the personal fields of one message; :attr:`session` goes in its envelope."""

    __slots__ = ("_info", "_prk", "session")

    def __init__(self, session: SealSession, prk: Any, tenant: str) -> None:
        self.session = session
        self._prk = prk
        self._info = FieldInfo(session.key_id, tenant, session.message)

    def seal(self, event_id: str, field: str, plaintext: str) -> Sealed:
        sealed = seal_field(self._prk, self._info.of(event_id, field), plaintext)
        return Sealed(FIELD_SCHEME, self.session.key_id, sealed[:NONCE_BYTES], sealed[NONCE_BYTES:])


class SessionSealer:
    """A producer's sessions for one tenant: starts one, numbers its messages, and starts
    the next after ``max_messages`` messages or ``max_seconds``, whichever comes first.

    ``scheme`` defaults to the hybrid KEM when the key offers it. Not thread-safe.
    """

    def __init__(
        self,
        key: IngestPublicKey,
        *,
        scheme: str | None = None,
        max_messages: int = DEFAULT_SESSION_MESSAGES,
        max_seconds: float = DEFAULT_SESSION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_messages < 1 or max_seconds <= 0:
            raise ValueError("a session needs at least one message and a positive lifetime")
        if scheme is None:
            scheme = SESSION_HYBRID if key.hybrid_public_key is not None else SESSION_X25519
        if scheme not in _SESSION_SUITES:
            raise ValueError(f"unknown session scheme {scheme!r}")
        if scheme == SESSION_HYBRID and key.hybrid_public_key is None:
            raise ValueError(
                f"ingest key {key.key_id} has no hybrid public key: rotate the ledger's ingest "
                f"key, or seal with {SESSION_X25519}"
            )
        self.key = key
        self.scheme = scheme
        self.max_messages = max_messages
        self.max_seconds = max_seconds
        self._clock = clock
        self._public = _public_key(key, scheme)
        self._prk: Any = None
        self._prefix: tuple[str, str, int, bytes] = ("", "", 0, b"")
        self._count = max_messages
        self._deadline = -float("inf")
        self.sessions_started = 0

    def next_message(self) -> MessageSealer:
        now = self._clock()
        if self._count >= self.max_messages or now >= self._deadline:
            self._start(now)
        scheme, key_id, started_ms, secret = self._prefix
        session = SealSession(scheme, key_id, started_ms, secret, self._count)
        self._count += 1
        return MessageSealer(session, self._prk, self.key.tenant)

    def _start(self, now: float) -> None:
        started_ms = int(now * 1000)
        secret = os.urandom(SECRET_BYTES)
        info = session_info(self.scheme, self.key.key_id, self.key.tenant, started_ms)
        sealed_secret = _SESSION_SUITES[self.scheme].encrypt(secret, self._public, info=info)
        self._prk = prk_hmac(session_prk(secret))
        self._prefix = (self.scheme, self.key.key_id, started_ms, sealed_secret)
        self._count = 0
        self._deadline = now + self.max_seconds
        self.sessions_started += 1


def _public_key(
    key: IngestPublicKey, scheme: str
) -> x25519.X25519PublicKey | MLKEM768X25519PublicKey:
    if scheme == SESSION_X25519:
        return x25519.X25519PublicKey.from_public_bytes(key.public_key)
    assert key.hybrid_public_key is not None
    raw = key.hybrid_public_key
    return MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(raw[:1184]),
        x25519.X25519PublicKey.from_public_bytes(raw[1184:]),
    )


class IngestPrivateKey:
    """An ingest private key in memory, parsed once (parsing costs half as much as an open).
    It is stored only wrapped by the KEK; :meth:`raw` is for wrapping it.

    ``raw`` is 32 bytes (an X25519 key, v1 key pairs) or 128 bytes (v2 key pairs: that
    X25519 key, then the ML-KEM-768 seed and the X25519 key of the hybrid KEM).
    """

    def __init__(self, raw: bytes) -> None:
        if len(raw) not in (32, 128):
            raise ValueError("an ingest private key is 32 or 128 bytes")
        self._raw = raw
        self._key = x25519.X25519PrivateKey.from_private_bytes(raw[:32])
        self._hybrid: MLKEM768X25519PrivateKey | None = None
        if len(raw) == 128:
            self._hybrid = MLKEM768X25519PrivateKey(
                mlkem.MLKEM768PrivateKey.from_seed_bytes(raw[32:96]),
                x25519.X25519PrivateKey.from_private_bytes(raw[96:]),
            )

    @classmethod
    def generate(cls) -> IngestPrivateKey:
        """A v2 key pair: X25519 for v1 and X25519 sessions, and a hybrid key."""
        return cls(
            x25519.X25519PrivateKey.generate().private_bytes_raw()
            + mlkem.MLKEM768PrivateKey.generate().private_bytes_raw()
            + x25519.X25519PrivateKey.generate().private_bytes_raw()
        )

    @property
    def has_hybrid(self) -> bool:
        """Whether this key pair has the hybrid KEM's key (made since v2)."""
        return self._hybrid is not None

    @property
    def algorithm(self) -> str:
        return INGEST_SCHEME if self._hybrid is None else KEY_ALGORITHM_V2

    def raw(self) -> bytes:
        return self._raw

    def public_key(self) -> bytes:
        """The X25519 public key (32 bytes)."""
        return self._key.public_key().public_bytes_raw()

    def hybrid_public_key(self) -> bytes | None:
        """The hybrid KEM's public key; None for a key pair made before v2."""
        if self._hybrid is None:
            return None
        public = mlkem.MLKEM768PrivateKey.from_seed_bytes(self._raw[32:96]).public_key()
        x_public = x25519.X25519PrivateKey.from_private_bytes(self._raw[96:]).public_key()
        return public.public_bytes_raw() + x_public.public_bytes_raw()

    def public_key_column(self) -> bytes:
        """What the key table stores as ``public_key``: X25519, then the hybrid key if any."""
        return self.public_key() + (self.hybrid_public_key() or b"")

    def open(self, tenant: str, event_id: str, field: str, sealed: Sealed) -> str:
        """Opens a v1 field. Raises CannotOpen for another scheme, a wrong key, binding or a
        tampered value."""
        if sealed.scheme != INGEST_SCHEME:
            raise CannotOpen("not sealed with the ingest scheme")
        info = _info(sealed.key_id, tenant, event_id, field)
        try:
            plain = _SUITE.decrypt(sealed.nonce + sealed.ciphertext, self._key, info=info)
            return plain.decode()
        except (InvalidTag, UnicodeDecodeError, ValueError):
            raise CannotOpen(f"sealed field {field!r} does not open with this key") from None

    def open_session(self, tenant: str, session: SealSession) -> bytes:
        """The session's PRK (see :func:`session_prk`). Raises CannotOpen if the header was
        tampered with, sealed for another tenant or key, or names a KEM this key lacks."""
        suite = _SESSION_SUITES.get(session.scheme)
        if suite is None:
            raise CannotOpen("unknown session scheme")
        private: x25519.X25519PrivateKey | MLKEM768X25519PrivateKey | None
        private = self._key if session.scheme == SESSION_X25519 else self._hybrid
        if private is None:
            raise CannotOpen("this ingest key has no hybrid part")
        info = session_info(session.scheme, session.key_id, tenant, session.started_at_ms)
        try:
            secret = suite.decrypt(session.secret, private, info=info)
        except (InvalidTag, ValueError):
            raise CannotOpen("the session secret does not open with this key") from None
        if len(secret) != SECRET_BYTES:
            raise CannotOpen("a session secret is 32 bytes")
        return session_prk(secret)


def split_public_key_column(column: bytes) -> tuple[bytes, bytes | None]:
    """The X25519 public key and the hybrid one (or None) from a key table row."""
    return column[:32], (column[32:] if len(column) > 32 else None)


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
