"""What the ledger stores beside its events, and the rule that keeps them consistent.

Three mutable tables sit next to the immutable event table, written **in the same
transaction** as the events they belong to (passed as keyword arguments to
``Application.save`` and handed by `eventsourcing` to the recorder):

- ``subject_keys``: each subject's wrapped data key. Deleting a row shreds the subject.
- ``subject_refs``: HMAC digest of (tenant, upstream reference) → subject id. Personal data
  (it links a reference to a subject), so it goes with erasure.
- ``ingest_receipts``: (tenant, event_id) of every recorded ingest event. A redelivered or
  duplicated message finds its receipt and is not recorded again.
- **Shredding** (``shredded=`` on save) deletes a subject's key and reference rows and moves
  each reference digest to ``erased_refs``, in the transaction that records ``KeysShredded``.
  ``erased_refs`` holds (tenant, digest) only — no subject id, no time — so a new event for
  an erased reference can be refused without linking the reference to the erased history.

(``ingest_counts`` and ``positions`` are bookkeeping for metrics and the relay, written
on their own.)

If the transaction fails, none of them is written; if it commits, all are.

Both recorders here implement :class:`LedgerStore`: one on PostgreSQL, one in memory for unit
tests. The contract tests in ``tests/`` run the same cases against both.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from threading import Event
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, StoredEvent

from ledger.storage.chain import Link, Row
from ledger.storage.merkle import Key


@dataclass(frozen=True)
class WrappedKey:
    subject_id: UUID
    tenant: str
    kek_id: str
    wrapped: bytes


@dataclass(frozen=True)
class SubjectRef:
    tenant: str
    digest: bytes
    subject_id: UUID


@dataclass(frozen=True)
class Shredded:
    tenant: str
    subject_id: UUID


@dataclass(frozen=True)
class Receipt:
    tenant: str
    event_id: str
    originator_id: UUID
    originator_version: int


class LedgerStore(ApplicationRecorder):
    """The recorder the ledger needs: events plus keys, reference lookups and receipts."""

    @abstractmethod
    def recorded_receipts(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (tenant, event_id) pairs are already recorded."""

    @abstractmethod
    def lookup_subjects(self, tenant: str, digests: Sequence[bytes]) -> dict[bytes, UUID]:
        """Subject ids by reference digest; unknown digests are absent."""

    @abstractmethod
    def shred(self, subjects: Sequence[Shredded]) -> None:
        """Shreds subjects outside an event save (re-applying erasures after a restore)."""

    @abstractmethod
    def erased_refs(self, tenant: str, digests: Sequence[bytes]) -> set[bytes]:
        """Which of these reference digests belonged to a subject that has been erased."""

    @abstractmethod
    def wrapped_keys(self, subject_ids: Sequence[UUID]) -> dict[UUID, WrappedKey]:
        """Wrapped data keys; shredded subjects are absent."""

    @abstractmethod
    def select_aggregates_events(
        self, ids: Sequence[UUID], after: Mapping[UUID, int] | None = None
    ) -> list[StoredEvent]:
        """Events of these aggregates, ordered by aggregate then version: all of them, or
        for an id in ``after`` only those with a greater version (to catch up a cache)."""

    def select_rows(self, start: int, limit: int, stop: int | None = None) -> list[Row]:
        """Stored events from notification id ``start`` to ``stop`` (inclusive), at most
        ``limit``, in id order: the columns the chain covers, as bare tuples with the
        originator id in its canonical text form — what verification and replays read,
        without an object per event."""
        page = self.select_notifications(start, limit=limit, stop=stop)
        return [
            (n.id, str(n.originator_id), n.originator_version, n.topic, bytes(n.state))
            for n in page
        ]

    @abstractmethod
    def select_chain(self, start: int, limit: int, stop: int | None = None) -> list[Link]:
        """Chain links from notification id ``start`` to ``stop`` (inclusive), at most
        ``limit``, in id order (``ledger.integrity``): written in the transaction that
        records their events."""

    @abstractmethod
    def aggregate_rows(self, originator_id: UUID) -> list[Row]:
        """One aggregate's events as :data:`Row` tuples (with their sequences), in order."""

    @abstractmethod
    def event_sequence(self, tenant: str, event_id: str) -> int | None:
        """The notification id of the event a producer recorded as (tenant, event_id): found
        through its receipt, among the few events its command recorded."""

    @abstractmethod
    def grow_tree(self, upto: int | None = None) -> int:
        """Integrates every recorded event after the Merkle log's last leaf (up to notification
        id ``upto``) as the next leaves, in ledger order; returns the tree's size. Idempotent,
        and safe to run from several processes at once."""

    @abstractmethod
    def tree_size(self, upto: int | None = None) -> int:
        """Leaves in the Merkle log (``ledger.storage.merkle``): all of them, or those of the
        events up to notification id ``upto``. Events join it when integrated (``grow_tree``)."""

    @abstractmethod
    def merkle_nodes(self, keys: Iterable[Key]) -> dict[Key, bytes]:
        """The stored nodes among ``keys`` ((level, index) pairs)."""

    @abstractmethod
    def merkle_level(self, level: int, start: int, limit: int) -> list[tuple[int, bytes]]:
        """Stored nodes of one level from index ``start``, at most ``limit``, in index order."""

    @abstractmethod
    def leaf_index(self, sequence: int) -> int | None:
        """The leaf index of the event at notification id ``sequence``, if there is one."""

    @abstractmethod
    def leaf_sequence(self, index: int) -> int | None:
        """The notification id of the event at leaf ``index``, if the tree has that leaf."""

    @abstractmethod
    def get_position(self, name: str) -> int:
        """A named reader's last processed notification id (0 if none)."""

    @abstractmethod
    def set_position(self, name: str, position: int) -> None: ...

    @abstractmethod
    def add_counts(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Adds to the ingest outcome counters, keyed by (outcome, reason); for metrics."""

    @abstractmethod
    def counts(self) -> dict[tuple[str, str], int]: ...

    @abstractmethod
    def acquire_lock(self, name: str, stop: Event, *, retry_s: float = 1.0) -> bool:
        """Blocks until this process holds the named lock, held until the store is closed;
        False if ``stop`` was set first. Makes a second relay a standby, not a duplicate."""

    @abstractmethod
    def holds_lock(self, name: str) -> bool:
        """Whether this process still holds the named lock. A PostgreSQL restart ends the
        session that held it, and a standby may then take it: the holder must check before
        each batch and, if it lost the lock, wait for it again."""

    @abstractmethod
    def wait_for_events(self, timeout: float) -> None:
        """Blocks until new events may have been recorded, or ``timeout`` seconds pass."""


# The most events one command records: the fact itself, and before it the subject's
# registration or after it the notice a change makes recipients due (``ChangeNoticeDue``).
EVENTS_PER_COMMAND = 3


def event_id_of(state: bytes) -> str | None:
    """The producer's event id in an event's stored state (not personal: stored in the clear)."""
    try:
        found = json.loads(state).get("event_id")
    except ValueError:
        return None
    return found if isinstance(found, str) else None
