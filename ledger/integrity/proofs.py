"""Inclusion and consistency proofs from a store's Merkle log, and their C2SP text form.

Rules this module keeps (``docs/audit.md``, "Proofs"):

- **A proof is computed from stored nodes only**: a few dozen, fetched at once
  (``ledger.storage.merkle``), never by rehashing the ledger. An event recorded but not yet
  integrated into the tree is integrated first.
- **A leaf comes with its event's stored columns**, so whoever holds the proof recomputes the
  leaf hash itself rather than trusting one.
- **The text form is c2sp.org/tlog-proof@v1**: ``index``, the audit path, a blank line and
  the checkpoint, exactly as the spec writes it; :func:`tlog_proof` needs a signed checkpoint
  of the proof's tree size.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from ledger.storage import merkle
from ledger.storage.chain import Row
from ledger.storage.store import LedgerStore

TLOG_PROOF = "c2sp.org/tlog-proof@v1"
PAGE = 4096  # stored nodes read at once when checking the stored tree


class NotInTree(LookupError):
    """The event, leaf or tree size asked for is not in the Merkle log (yet)."""


@dataclass(frozen=True)
class Inclusion:
    sequence: int
    index: int
    size: int
    row: Row  # the event's stored columns: sequence, originator id, version, topic, state
    path: list[bytes]
    root: bytes

    @property
    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(merkle.leaf(*self.row))

    def verifies(self) -> bool:
        return merkle.verify_inclusion(self.index, self.size, self.leaf_hash, self.path, self.root)

    def to_json(self) -> dict[str, Any]:
        sequence, originator, version, topic, state = self.row
        return {
            "sequence": sequence,
            "leaf_index": self.index,
            "tree_size": self.size,
            "root": b64(self.root),
            "event": {
                "originator_id": originator,
                "originator_version": version,
                "topic": topic,
                "state": b64(state),
            },
            "leaf_hash": b64(self.leaf_hash),
            "proof": [b64(h) for h in self.path],
        }


def tenant_of(state: bytes) -> str | None:
    """The tenant an event belongs to, from its stored state (a tenant's own registration
    names it ``code``)."""
    try:
        body = json.loads(state)
    except ValueError:
        return None
    found = body.get("tenant", body.get("code")) if isinstance(body, dict) else None
    return found if isinstance(found, str) else None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def root(store: LedgerStore, size: int) -> bytes:
    if size > store.tree_size():
        raise NotInTree(f"the tree has fewer than {size} leaves")
    return merkle.root(size, store.merkle_nodes(merkle.root_keys(size)))


def leaf_of(store: LedgerStore, sequence: int) -> int | None:
    """The event's leaf index, integrating the tree first only if the event is not in it yet
    (a proof of an integrated event writes nothing)."""
    index = store.leaf_index(sequence)
    if index is None:  # recorded but not integrated yet, or not recorded at all
        store.grow_tree(sequence)
        index = store.leaf_index(sequence)
    return index


def inclusion(store: LedgerStore, sequence: int, size: int | None = None) -> Inclusion:
    """The proof that the event at ``sequence`` is in the tree of ``size`` leaves (default:
    the whole tree now). Raises :class:`NotInTree`."""
    index = leaf_of(store, sequence)
    if index is None:
        raise NotInTree(f"no event at sequence {sequence}")
    current = store.tree_size()
    size = current if size is None else size
    if not index < size <= current:
        raise NotInTree(f"the event at sequence {sequence} is not in a tree of {size} leaves")
    keys = merkle.inclusion_keys(index, size) | merkle.root_keys(size)
    nodes = store.merkle_nodes(keys)
    rows = store.select_rows(sequence, 1, sequence)
    if not rows:
        raise NotInTree(f"no event at sequence {sequence}")
    return Inclusion(
        sequence,
        index,
        size,
        rows[0],
        merkle.inclusion_proof(index, size, nodes),
        merkle.root(size, nodes),
    )


@dataclass(frozen=True)
class Consistency:
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    path: list[bytes]

    def verifies(self) -> bool:
        return merkle.verify_consistency(
            self.first, self.second, self.first_root, self.second_root, self.path
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "second": self.second,
            "first_root": b64(self.first_root),
            "second_root": b64(self.second_root),
            "proof": [b64(h) for h in self.path],
        }


def consistency(store: LedgerStore, first: int, second: int | None = None) -> Consistency:
    """The proof that the tree of ``first`` leaves is a prefix of the tree of ``second``
    (default: the tree of every event recorded)."""
    current = store.tree_size()
    if second is None or second > current:
        current = store.grow_tree()
    second = current if second is None else second
    if not 0 <= first <= second <= current:
        raise NotInTree(f"no consistency proof from {first} to {second} leaves here")
    keys = merkle.consistency_keys(first, second) | merkle.root_keys(first)
    nodes = store.merkle_nodes(keys | merkle.root_keys(second))
    return Consistency(
        first,
        second,
        merkle.root(first, nodes),
        merkle.root(second, nodes),
        merkle.consistency_proof(first, second, nodes),
    )


def tlog_proof(index: int, path: list[bytes], checkpoint_note: str) -> str:
    """c2sp.org/tlog-proof@v1 text: the checkpoint must be of the proof's tree size."""
    lines = [TLOG_PROOF, f"index {index}", *(b64(h) for h in path), ""]
    return "\n".join(lines) + "\n" + checkpoint_note


def first_bad_node(store: LedgerStore, first: int, size: int) -> tuple[int, int] | None:
    """The first stored node (level, index) over leaves ``first`` to ``size`` that is missing
    or not the hash of its two stored children. With the root checked against the events,
    no such node means every stored node is the one the events make (short of a SHA-256
    collision): the check behind ``ledger audit verify`` and every checkpoint."""
    for level in range(1, size.bit_length()):
        bad = _first_bad_at(store, level, first >> level, size >> level)
        if bad is not None:
            return level, bad
    return None


def _first_bad_at(store: LedgerStore, level: int, start: int, end: int) -> int | None:
    while start < end:
        stop = min(end, start + PAGE)
        parents = store.merkle_level(level, start, stop - start)
        children = dict(store.merkle_level(level - 1, 2 * start, 2 * (stop - start)))
        got = dict(parents)
        for index in range(start, stop):
            digest = got.get(index)
            left, right = children.get(2 * index), children.get(2 * index + 1)
            if digest is None or left is None or right is None:
                return index
            if merkle.node_hash(left, right) != digest:
                return index
        start = stop
    return None
