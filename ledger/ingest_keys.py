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
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ledger.crypto import CannotOpen, KeyEncryptionKey
from ledger.crypto_ingest import INGEST_SCHEME, IngestPrivateKey, IngestPublicKey, routing_key
from ledger.domain.rules import IngestKeyDestroyed, IngestKeyUnknown, IngestSealInvalid
from ledger.domain.values import Sealed

DEFAULT_RETENTION = timedelta(days=7)
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
    """Where key pairs are kept: PostgreSQL (``ledger.ingest_keys_postgres``) or memory."""

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

    It is the :class:`ledger.contract.IngestOpener` of the ingest consumer. Not thread-safe:
    one per consumer thread.
    """

    def __init__(
        self,
        table: IngestKeyTable,
        kek: KeyEncryptionKey,
        lookup_key: bytes,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        clock: Clock = utc_now,
    ) -> None:
        self.table = table
        self.retention = retention
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
        return IngestPublicKey(
            tenant, current.key_id, current.public_key, routing_key(self._lookup_key, tenant)
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
            algorithm=INGEST_SCHEME,
            public_key=private.public_key(),
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

    def _private_key(self, key_id: str) -> IngestPrivateKey:
        row = self._row(key_id)
        if row is None:
            raise IngestKeyUnknown(f"ingest key {shown_key_id(key_id)} is unknown to the ledger")
        if row.wrapped_private is None or self._expired(row):
            self._private.pop(key_id, None)
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

    def _expired(self, row: IngestKeyRow) -> bool:
        return row.retired_at is not None and row.retired_at + self.retention <= self._clock()

    def _reload(self) -> None:
        self._rows = {row.key_id: row for row in self.table.rows()}
        for key_id in list(self._private):
            row = self._rows.get(key_id)
            if row is None or row.wrapped_private is None:
                del self._private[key_id]
        if len(self._unknown) > 10_000:
            self._unknown.clear()
        self._loaded_at = time.monotonic()
