"""In-memory :class:`ledger.storage.store.LedgerStore` for unit tests: same rules, no I/O."""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from threading import Event
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder

from ledger.storage import merkle
from ledger.storage.chain import Link, Row, extend, stored
from ledger.storage.store import (
    EVENTS_PER_COMMAND,
    LedgerStore,
    Receipt,
    Shredded,
    SubjectRef,
    WrappedKey,
    event_id_of,
)


class InMemoryLedgerRecorder(POPOApplicationRecorder, LedgerStore):
    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[UUID, WrappedKey] = {}
        self.refs: dict[tuple[str, bytes], UUID] = {}
        self.erased: set[tuple[str, bytes]] = set()
        self.receipts: dict[tuple[str, str], Receipt] = {}
        self.positions: dict[str, int] = {}
        self.outcome_counts: dict[tuple[str, str], int] = {}
        self.locks: set[str] = set()
        self.chain: dict[int, Link] = {}
        self.tree = merkle.Tree()
        self.leaves: dict[int, int] = {}  # sequence -> leaf index
        self.sequences: list[int] = []  # leaf index -> sequence

    def _insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        new_keys: Sequence[WrappedKey] = (),
        new_refs: Sequence[SubjectRef] = (),
        receipts: Sequence[Receipt] = (),
        shredded: Sequence[Shredded] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        with self._database_lock:
            self._assert_uniqueness(stored_events, **kwargs)
            self._check_new(new_keys, new_refs, receipts)
            for k in new_keys:
                self.keys[k.subject_id] = k
            for r in new_refs:
                self.refs[(r.tenant, r.digest)] = r.subject_id
            for receipt in receipts:
                self.receipts[(receipt.tenant, receipt.event_id)] = receipt
            for gone in shredded:
                self._shred(gone)
            ids = self._update_table(stored_events, **kwargs)
            self._chain(stored_events, ids or ())
            return ids

    def _chain(self, events: Sequence[StoredEvent], ids: Sequence[int]) -> None:
        """The same links the PostgreSQL recorder writes, under the same lock as the events."""
        head = self.chain[max(self.chain)] if self.chain else None
        batch = [
            stored(i, e.originator_id, e.originator_version, e.topic, e.state)
            for e, i in zip(events, ids, strict=True)
        ]
        for link in extend(head, batch):
            self.chain[link.sequence] = link

    def aggregate_rows(self, originator_id: UUID) -> list[Row]:
        with self._database_lock:
            index = self._stored_events_index[str(originator_id)]
            out: list[Row] = []
            for version in sorted(index):
                event = self._stored_events[index[version]]
                out.append(
                    (
                        index[version] + 1,
                        str(originator_id),
                        version,
                        event.topic,
                        bytes(event.state),
                    )
                )
            return out

    def event_sequence(self, tenant: str, event_id: str) -> int | None:
        with self._database_lock:
            receipt = self.receipts.get((tenant, event_id))
            if receipt is None:
                return None
            index = self._stored_events_index[str(receipt.originator_id)]
            lowest = receipt.originator_version - EVENTS_PER_COMMAND + 1
            for version in range(receipt.originator_version, lowest - 1, -1):
                position = index.get(version)
                if position is None:
                    continue
                if event_id_of(bytes(self._stored_events[position].state)) == event_id:
                    return position + 1
            return None

    def grow_tree(self, upto: int | None = None) -> int:
        """The same integration as the PostgreSQL recorder's, under the store's lock."""
        with self._database_lock:
            after = self.sequences[-1] if self.sequences else 0
            stop = len(self._stored_events) if upto is None else upto
            for sequence in range(after + 1, stop + 1):
                if sequence > len(self._stored_events):
                    break
                event = self._stored_events[sequence - 1]
                data = merkle.leaf(
                    sequence,
                    str(event.originator_id),
                    event.originator_version,
                    event.topic,
                    bytes(event.state),
                )
                self.leaves[sequence] = self.tree.size
                self.sequences.append(sequence)
                self.tree.extend([merkle.leaf_hash(data)])
            return self.tree.size

    def tree_size(self, upto: int | None = None) -> int:
        with self._database_lock:
            if upto is None:
                return self.tree.size
            return bisect_right(self.sequences, upto)

    def merkle_nodes(self, keys: Iterable[merkle.Key]) -> dict[merkle.Key, bytes]:
        with self._database_lock:
            return {k: self.tree.nodes[k] for k in keys if k in self.tree.nodes}

    def merkle_level(self, level: int, start: int, limit: int) -> list[tuple[int, bytes]]:
        with self._database_lock:
            found = sorted((i, h) for (lv, i), h in self.tree.nodes.items() if lv == level)
            return [(i, h) for i, h in found if i >= start][:limit]

    def leaf_index(self, sequence: int) -> int | None:
        with self._database_lock:
            return self.leaves.get(sequence)

    def leaf_sequence(self, index: int) -> int | None:
        with self._database_lock:
            return self.sequences[index] if 0 <= index < len(self.sequences) else None

    def select_chain(self, start: int, limit: int, stop: int | None = None) -> list[Link]:
        with self._database_lock:
            found = (i for i in sorted(self.chain) if i >= start and (stop is None or i <= stop))
            return [self.chain[i] for i in found][:limit]

    def _shred(self, gone: Shredded) -> None:
        self.keys.pop(gone.subject_id, None)
        for ref, subject_id in list(self.refs.items()):
            if subject_id == gone.subject_id:
                del self.refs[ref]
                self.erased.add(ref)

    def _check_new(
        self,
        new_keys: Sequence[WrappedKey],
        new_refs: Sequence[SubjectRef],
        receipts: Sequence[Receipt],
    ) -> None:
        if any(k.subject_id in self.keys for k in new_keys):
            raise IntegrityError("subject key already exists")
        if any((r.tenant, r.digest) in self.refs for r in new_refs):
            raise IntegrityError("subject reference already registered")
        if any((r.tenant, r.event_id) in self.receipts for r in receipts):
            raise IntegrityError("event id already recorded")

    def recorded_receipts(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        return {k for k in keys if k in self.receipts}

    def lookup_subjects(self, tenant: str, digests: Sequence[bytes]) -> dict[bytes, UUID]:
        return {d: self.refs[(tenant, d)] for d in digests if (tenant, d) in self.refs}

    def shred(self, subjects: Sequence[Shredded]) -> None:
        with self._database_lock:
            for gone in subjects:
                self._shred(gone)

    def erased_refs(self, tenant: str, digests: Sequence[bytes]) -> set[bytes]:
        return {d for d in digests if (tenant, d) in self.erased}

    def wrapped_keys(self, subject_ids: Sequence[UUID]) -> dict[UUID, WrappedKey]:
        return {i: self.keys[i] for i in subject_ids if i in self.keys}

    def select_aggregates_events(
        self, ids: Sequence[UUID], after: Mapping[UUID, int] | None = None
    ) -> list[StoredEvent]:
        wanted = set(ids)
        after = after or {}
        with self._database_lock:
            found = [
                e
                for e in self._stored_events
                if e.originator_id in wanted
                and e.originator_version > after.get(e.originator_id, 0)  # type: ignore[arg-type]
            ]
        return sorted(found, key=lambda e: (str(e.originator_id), e.originator_version))

    def get_position(self, name: str) -> int:
        return self.positions.get(name, 0)

    def set_position(self, name: str, position: int) -> None:
        self.positions[name] = position

    def add_counts(self, counts: Mapping[tuple[str, str], int]) -> None:
        for key, n in counts.items():
            self.outcome_counts[key] = self.outcome_counts.get(key, 0) + n

    def counts(self) -> dict[tuple[str, str], int]:
        return dict(self.outcome_counts)

    def holds_lock(self, name: str) -> bool:
        with self._database_lock:
            return name in self.locks

    def acquire_lock(self, name: str, stop: Event, *, retry_s: float = 1.0) -> bool:
        while not stop.is_set():
            with self._database_lock:
                if name not in self.locks:
                    self.locks.add(name)
                    return True
            stop.wait(retry_s)
        return False

    def wait_for_events(self, timeout: float) -> None:
        time.sleep(min(timeout, 0.01))
