"""The ledger's ingest key pairs: which one producers seal to, which ones still open, and when
a private key is destroyed.

Each key pair is in one of three states (one row each in ``{schema}.ingest_keys``):

- **current** — exactly one at a time: producers seal to it. The first is made on first use.
- **retired** — replaced by a newer key (``ledger ingest-keys rotate``); it still opens
  messages sealed to it, because producers switch over and the topic drains gradually.
- **destroyed** — its private key is deleted; a message sealed to it is rejected with
  ``ingest_key_destroyed``. The row stays, so that rejection is precise.

Rules this module keeps:

- **A private key is stored only wrapped** by the KEK (context ``ingest:<key id>``); in clear
  it exists only in this process's memory, never in an event, a log line or a message.
- **Readability is bounded.** A key retired longer ago than the ingest retention
  (``LEDGER_INGEST_RETENTION``, at least the ingest topic's ``retention.ms``) is destroyed by
  :meth:`IngestKeyring.destroy_expired` (``ledger ingest`` runs it on start and hourly, and
  ``ledger ingest-keys destroy-expired`` on demand). Independently, a keyring refuses to use
  such a key from that moment on, whether or not a destroy has run yet.
- **Other processes' changes are seen quickly.** The key table is read again at least every
  ``refresh_s`` seconds (a minute), and at once when a message names an unknown key id.
- **Opened v2 sessions are cached, and forgotten with their key.** A message's session
  header is opened once (one HPKE open) and its derived key kept in a bounded LRU cache
  (:data:`SESSION_CACHE_SIZE` sessions) keyed by a hash of the whole header; every later use
  checks its ingest key again, and a reload drops the sessions of keys destroyed or past the
  retention, so destroying a key makes its sessions unreadable at once.
- **Sessions are bounded.** A message numbered ``session_max_messages`` or more in its
  session, or sent more than ``session_max_age`` after the session started (or more than
  :data:`SESSION_CLOCK_SKEW` before), is refused with ``ingest_session_exceeded``.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ledger.domain.rules import (
    IngestKeyDestroyed,
    IngestKeyUnknown,
    IngestSealInvalid,
    IngestSessionExceeded,
)
from ledger.domain.values import Sealed
from ledger.keys.crypto import CannotOpen, KeyEncryptionKey
from ledger.keys.crypto_ingest import (
    FIELD_SCHEME,
    INGEST_SCHEME,
    SESSION_HYBRID,
    SESSION_SCHEMES,
    SESSION_X25519,
    FieldInfo,
    IngestPrivateKey,
    IngestPublicKey,
    SealSession,
    open_field,
    prk_hmac,
    routing_key,
    split_public_key_column,
)

DEFAULT_RETENTION = timedelta(days=7)
DEFAULT_SESSION_MAX_MESSAGES = 100_000
DEFAULT_SESSION_MAX_AGE = timedelta(hours=1)
SESSION_CACHE_SIZE = 4096
SESSION_CLOCK_SKEW = timedelta(minutes=5)
REFRESH_S = 60.0
UNKNOWN_RETRY_S = 1.0
KEY_ID = re.compile(r"^ik-[0-9]{8}-[0-9a-f]{8}$")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def key_document(key: IngestPublicKey, created_at: datetime) -> dict[str, str]:
    """The ingest key document as ``GET /v1/ingest-key`` answers it and ``ledger ingest-keys
    show`` prints it: the fields of :meth:`IngestPublicKey.as_json` and when the key pair
    became current (ISO 8601, UTC, ``Z``)."""
    when = created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {**key.as_json(), "created_at": when}


@dataclass(frozen=True)
class IngestKeyRow:
    key_id: str
    algorithm: str
    public_key: bytes
    kek_id: str
    wrapped_private: bytes | None  # None once destroyed
    created_at: datetime
    retired_at: datetime | None = None
    destroyed_at: datetime | None = None

    @property
    def state(self) -> str:
        if self.destroyed_at is not None:
            return "destroyed"
        return "current" if self.retired_at is None else "retired"


class IngestKeyTable(Protocol):
    """Where key pairs are kept: PostgreSQL (``ledger.keys.ingest_keys_postgres``) or memory."""

    def rows(self) -> list[IngestKeyRow]:
        """Every key pair, oldest first."""

    def add_first(self, row: IngestKeyRow) -> None:
        """Adds ``row`` as the current key, unless there is one already."""

    def rotate(self, row: IngestKeyRow) -> None:
        """Retires the current key and adds ``row`` as current, in one transaction."""

    def destroy_retired_for(self, retention: timedelta) -> list[str]:
        """Deletes the private keys retired at least ``retention`` ago; returns their ids."""


class MemoryIngestKeyTable:
    """The key table of an in-memory ledger (unit tests)."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self._rows: list[IngestKeyRow] = []
        self._clock = clock

    def rows(self) -> list[IngestKeyRow]:
        return list(self._rows)

    def add_first(self, row: IngestKeyRow) -> None:
        if not any(r.retired_at is None for r in self._rows):
            self._rows.append(replace(row, created_at=self._clock()))

    def rotate(self, row: IngestKeyRow) -> None:
        now = self._clock()
        self._rows = [r if r.retired_at else replace(r, retired_at=now) for r in self._rows]
        self._rows.append(replace(row, created_at=now))

    def destroy_retired_for(self, retention: timedelta) -> list[str]:
        cutoff = self._clock() - retention
        expired = [
            r.key_id
            for r in self._rows
            if r.retired_at and r.retired_at <= cutoff and r.destroyed_at is None
        ]
        self._rows = [
            replace(r, wrapped_private=None, destroyed_at=self._clock())
            if r.key_id in expired
            else r
            for r in self._rows
        ]
        return expired


def _context(key_id: str) -> bytes:
    return b"ingest:" + key_id.encode()


def new_key_id(now: datetime) -> str:
    return f"ik-{now:%Y%m%d}-{secrets.token_hex(4)}"


def shown_key_id(key_id: str) -> str:
    """A key id fit for a rejection detail: producer-controlled text is not echoed unless it
    has the ledger's key id format."""
    return key_id if KEY_ID.match(key_id) else "(not a ledger key id)"


class IngestKeyring:
    """Issues, rotates and destroys ingest key pairs, and opens what producers sealed.

    It is the :class:`ledger.wire.contract.IngestOpener` of the ingest consumer. Not thread-safe:
    one per consumer thread.
    """

    def __init__(
        self,
        table: IngestKeyTable,
        kek: KeyEncryptionKey,
        lookup_key: bytes,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        session_max_messages: int = DEFAULT_SESSION_MAX_MESSAGES,
        session_max_age: timedelta = DEFAULT_SESSION_MAX_AGE,
        clock: Clock = utc_now,
    ) -> None:
        self.table = table
        self.retention = retention
        self.session_max_messages = session_max_messages
        self.session_max_age = session_max_age
        self._sessions: OrderedDict[tuple[str, str, str, int, bytes], tuple[str, Any]]
        self._sessions = OrderedDict()
        self.refresh_s = REFRESH_S
        self._kek = kek
        self._lookup_key = lookup_key
        self._clock = clock
        self._rows: dict[str, IngestKeyRow] = {}
        self._private: dict[str, IngestPrivateKey] = {}
        self._loaded_at = -float("inf")
        self._unknown: dict[str, float] = {}  # key id -> when a reload did not find it

    # Operators and producers.

    def current(self) -> IngestKeyRow:
        """The key producers seal to; the first one is made here if there is none."""
        current = self._current()
        if current is None:
            self.table.add_first(self._new_row())
            current = self._current()
        assert current is not None, "the ingest key table has no current key after adding one"
        return current

    def public_key_for(self, tenant: str) -> IngestPublicKey:
        """What the producers of ``tenant`` need: the current public key, their routing key."""
        current = self.current()
        x25519_key, hybrid_key = split_public_key_column(current.public_key)
        return IngestPublicKey(
            tenant,
            current.key_id,
            x25519_key,
            routing_key(self._lookup_key, tenant),
            hybrid_public_key=hybrid_key,
        )

    def document_for(self, tenant: str) -> dict[str, str]:
        """:func:`key_document` of the current key for ``tenant``'s producers."""
        return key_document(self.public_key_for(tenant), self.current().created_at)

    def rotate(self) -> IngestKeyRow:
        """Makes a new current key; the one before is retired (it still opens)."""
        self.table.rotate(self._new_row())
        self._reload()
        current = self._current(reload=False)
        assert current is not None
        return current

    def destroy_expired(self) -> list[str]:
        """Destroys the private keys retired longer ago than the retention; their ids."""
        destroyed = self.table.destroy_retired_for(self.retention)
        self._reload()
        return destroyed

    def key_pairs(self) -> list[IngestKeyRow]:
        self._reload()
        return sorted(self._rows.values(), key=lambda r: r.created_at)

    def _current(self, *, reload: bool = True) -> IngestKeyRow | None:
        if reload:
            self._reload()
        return next((r for r in self._rows.values() if r.retired_at is None), None)

    def _new_row(self) -> IngestKeyRow:
        now = self._clock()
        key_id = new_key_id(now)
        private = IngestPrivateKey.generate()
        self._private[key_id] = private
        return IngestKeyRow(
            key_id=key_id,
            algorithm=private.algorithm,
            public_key=private.public_key_column(),
            kek_id=self._kek.key_id,
            wrapped_private=self._kek.wrap(private.raw(), _context(key_id)),
            created_at=now,
        )

    # The ingest consumer.

    def open(self, tenant: str, event_id: str, field: str, sealed: Sealed) -> str:
        if sealed.scheme != INGEST_SCHEME:
            raise IngestSealInvalid(f"{field} is sealed with another scheme than {INGEST_SCHEME}")
        private = self._private_key(sealed.key_id)
        try:
            return private.open(tenant, event_id, field, sealed)
        except CannotOpen:
            raise IngestSealInvalid(
                f"{field} does not open with ingest key {sealed.key_id}: tampered with, or "
                "sealed for another field, tenant or event"
            ) from None

    def open_session(
        self, tenant: str, session: SealSession, sent_at: datetime | None
    ) -> OpenedSession:
        """Checks a message's session header against the bounds and opens it (from the cache
        when it was opened before). Raises a RuleViolation naming no value."""
        if session.scheme not in SESSION_SCHEMES:
            raise IngestSealInvalid("envelope.seal_session names an unknown session scheme")
        if not 0 <= session.message < self.session_max_messages:
            raise IngestSessionExceeded(
                f"message {session.message} of its session: the ledger accepts messages "
                f"0 to {self.session_max_messages - 1} of a session; start a new session"
            )
        sent = sent_at or self._clock()
        started = _from_ms(session.started_at_ms)
        if sent - started > self.session_max_age:
            raise IngestSessionExceeded(
                f"sent {(sent - started).total_seconds():.0f} s after its session started: the "
                f"ledger accepts {self.session_max_age.total_seconds():.0f} s; start a new session"
            )
        if started - sent > SESSION_CLOCK_SKEW:
            raise IngestSessionExceeded("its session starts after the message was sent")
        private = self._private_key(session.key_id)
        if session.scheme == SESSION_HYBRID and not private.has_hybrid:
            raise IngestSealInvalid(
                f"ingest key {session.key_id} predates sealed ingest v2 and has no hybrid KEM "
                f"key: seal to the current ingest key, or with {SESSION_X25519}"
            )
        # The whole header but its message number: equal keys mean the same secret.
        cache_key = (tenant, session.scheme, session.key_id, session.started_at_ms, session.secret)
        cached = self._sessions.get(cache_key)
        if cached is not None:
            self._sessions.move_to_end(cache_key)
            return OpenedSession(cached[1], session, tenant)
        try:
            prk = private.open_session(tenant, session)
        except CannotOpen:
            raise IngestSealInvalid(
                f"envelope.seal_session does not open with ingest key {session.key_id}: "
                "tampered with, or sealed for another tenant"
            ) from None
        self._sessions[cache_key] = (session.key_id, prk_hmac(prk))
        if len(self._sessions) > SESSION_CACHE_SIZE:
            self._sessions.popitem(last=False)
        return OpenedSession(self._sessions[cache_key][1], session, tenant)

    def cached_sessions(self) -> int:
        return len(self._sessions)

    def _private_key(self, key_id: str) -> IngestPrivateKey:
        row = self._row(key_id)
        if row is None:
            raise IngestKeyUnknown(f"ingest key {shown_key_id(key_id)} is unknown to the ledger")
        if row.wrapped_private is None or self._expired(row):
            self._private.pop(key_id, None)
            self._forget_sessions({key_id})
            raise IngestKeyDestroyed(
                f"ingest key {key_id} was retired longer ago than the ingest retention and its "
                "private key is destroyed; fetch the current ingest key and send again"
            )
        private = self._private.get(key_id)
        if private is None:
            raw = self._kek.unwrap(row.wrapped_private, _context(key_id), kek_id=row.kek_id)
            private = IngestPrivateKey(raw)
            self._private[key_id] = private
        return private

    def _row(self, key_id: str) -> IngestKeyRow | None:
        now = time.monotonic()
        stale = now - self._loaded_at > self.refresh_s
        # An id a reload has just missed cannot be a key made since: nobody could have
        # sealed to it yet. So unknown ids cost at most one query a second each.
        missed_at = self._unknown.get(key_id, -float("inf"))
        unknown = key_id not in self._rows and now - missed_at > UNKNOWN_RETRY_S
        if stale or unknown:
            self._reload()
            if key_id not in self._rows:
                self._unknown[key_id] = now
        return self._rows.get(key_id)

    def _forget_sessions(self, key_ids: set[str]) -> None:
        if key_ids:
            for cache_key in [k for k, (key_id, _) in self._sessions.items() if key_id in key_ids]:
                del self._sessions[cache_key]

    def _expired(self, row: IngestKeyRow) -> bool:
        return row.retired_at is not None and row.retired_at + self.retention <= self._clock()

    def _reload(self) -> None:
        self._rows = {row.key_id: row for row in self.table.rows()}
        for key_id in list(self._private):
            row = self._rows.get(key_id)
            if row is None or row.wrapped_private is None:
                del self._private[key_id]
        unusable = {
            key_id
            for key_id, _ in self._sessions.values()
            if (row := self._rows.get(key_id)) is None
            or row.wrapped_private is None
            or self._expired(row)
        }
        self._forget_sessions(unusable)
        if len(self._unknown) > 10_000:
            self._unknown.clear()
        self._loaded_at = time.monotonic()


class OpenedSession:
    """One message's opened session: opens its fields
    (:class:`ledger.wire.contract.SessionOpener`)."""

    __slots__ = ("_info", "_key_id", "_prk")

    def __init__(self, prk: Any, session: SealSession, tenant: str) -> None:
        self._prk = prk
        self._key_id = session.key_id
        self._info = FieldInfo(session.key_id, tenant, session.message)

    def open(self, event_id: str, field: str, sealed: Sealed) -> str:
        if sealed.scheme != FIELD_SCHEME or sealed.key_id != self._key_id:
            raise IngestSealInvalid(
                f"{field} is not sealed with {FIELD_SCHEME} to its message's session key"
            )
        info = self._info.of(event_id, field)
        try:
            return open_field(self._prk, info, sealed.nonce, sealed.ciphertext)
        except CannotOpen:
            raise IngestSealInvalid(
                f"{field} does not open in its message's session: tampered with, or sealed for "
                "another field, event, tenant or message"
            ) from None


def _from_ms(ms: int) -> datetime:
    if not 0 <= ms < _YEAR_10000_MS:
        raise IngestSessionExceeded("envelope.seal_session.started_at is out of range")
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


_YEAR_10000_MS = 253_402_300_800_000
