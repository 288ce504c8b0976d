"""The Merkle log over recorded events (RFC 9162, section 2.1): the one definition of its
leaves, nodes, roots and proofs.

Rules this module keeps (``docs/audit.md`` states the same format for outside verifiers):

- **Every recorded event is a leaf**, in ledger order, over the stored form the hash chain
  covers, with its sequence, so a proven leaf says where in the ledger it stands::

      leaf  = "ledger-leaf-v1" ‖ u64(sequence) ‖ str(originator_id) ‖ u64(originator_version)
              ‖ str(topic) ‖ bytes(state)          (the encodings of ``ledger.storage.chain``)
      leaf hash = SHA-256(0x00 ‖ leaf),  node hash = SHA-256(0x01 ‖ left ‖ right)

  Leaf *indexes* count events from 0 without gaps; sequences may have gaps.
- **Stored as perfect subtrees.** A node is named ``(level, index)``: the root of the perfect
  subtree of ``2**level`` leaves starting at leaf ``index * 2**level``. Level 0 holds the leaf
  hashes. Appending leaves yields every node that became complete (:func:`append`); the
  right edge of a tree whose size is not a power of two is computed from them, never stored.
- **Proofs read at most a few dozen stored nodes.** Which nodes a proof needs depends only on
  the sizes and index, never on hash values: :func:`inclusion_keys` and
  :func:`consistency_keys` name them, so a store fetches them in one query, then
  :func:`inclusion_proof` and :func:`consistency_proof` compute the proof from them.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

from ledger.storage.chain import DOMAIN as CHAIN_DOMAIN
from ledger.storage.chain import Row

LEAF_DOMAIN = b"ledger-leaf-v1"
_LEAF_PREFIX = b"\x00" + LEAF_DOMAIN
_CHAIN_HEAD = struct.Struct(">QQI")  # the chain entry's u64(sequence) u64(previous) u32(len(id))
EMPTY_ROOT = hashlib.sha256(b"").digest()
_HEAD = struct.Struct(">QI")  # u64(sequence) u32(len(originator id))
_VERSION_AND_TOPIC_LENGTH = struct.Struct(">QI")
_U32 = struct.Struct(">I")

Key = tuple[int, int]  # (level, index)


class Node(NamedTuple):
    level: int
    index: int  # type: ignore[assignment]  # shadows tuple.index: the name the format uses
    hash: bytes


def leaf(sequence: int, originator: str, version: int, topic: str, state: bytes) -> bytes:
    """The exact bytes of one event's leaf (``originator`` in canonical UUID text)."""
    originator_bytes = originator.encode()
    topic_bytes = topic.encode()
    return b"".join(
        (
            LEAF_DOMAIN,
            _HEAD.pack(sequence, len(originator_bytes)),
            originator_bytes,
            _VERSION_AND_TOPIC_LENGTH.pack(version, len(topic_bytes)),
            topic_bytes,
            _U32.pack(len(state)),
            state,
        )
    )


def link_and_leaf(previous_hash: bytes, row: Row, previous: int) -> tuple[bytes, bytes]:
    """The chain hash (``ledger.storage.chain``) and the leaf hash of one event read as a
    :data:`Row`, from one encoding of the columns both cover: what verification computes for
    every event (``tests/unit/test_merkle.py`` holds it to the two definitions)."""
    sequence, originator, version, topic, state = row
    originator_bytes, topic_bytes = originator.encode(), topic.encode()
    rest = b"".join(
        (
            originator_bytes,
            _VERSION_AND_TOPIC_LENGTH.pack(version, len(topic_bytes)),
            topic_bytes,
            _U32.pack(len(state)),
            state,
        )
    )
    link = hashlib.sha256(
        previous_hash + CHAIN_DOMAIN + _CHAIN_HEAD.pack(sequence, previous, len(originator_bytes))
    )
    link.update(rest)
    leaf = hashlib.sha256(_LEAF_PREFIX + _HEAD.pack(sequence, len(originator_bytes)))
    leaf.update(rest)
    return link.digest(), leaf.digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def frontier_keys(size: int) -> list[Key]:
    """The perfect subtrees a tree of ``size`` leaves splits into, left to right (largest
    first): the nodes its root and its next appends are computed from."""
    keys, start = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            keys.append((level, start >> level))
            start += 1 << level
    return keys


def append(size: int, frontier: Sequence[bytes], leaf_hashes: Iterable[bytes]) -> list[Node]:
    """The nodes completed by appending ``leaf_hashes`` to a tree of ``size`` leaves whose
    frontier (the hashes of :func:`frontier_keys`) is ``frontier``: the new leaves first of
    all, then every internal node they complete."""
    stack = [
        Node(level, index, h)
        for (level, index), h in zip(frontier_keys(size), frontier, strict=True)
    ]
    made: list[Node] = []
    index = size
    for h in leaf_hashes:
        node = Node(0, index, h)
        made.append(node)
        while stack and stack[-1].level == node.level:
            left = stack.pop()
            node = Node(node.level + 1, left.index >> 1, node_hash(left.hash, node.hash))
            made.append(node)
        stack.append(node)
        index += 1
    return made


def root_of(frontier: Sequence[bytes]) -> bytes:
    """The tree's root from its frontier: RFC 9162's MTH, folded from the right."""
    if not frontier:
        return EMPTY_ROOT
    acc = frontier[-1]
    for h in reversed(frontier[:-1]):
        acc = node_hash(h, acc)
    return acc


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


Get = Callable[[int, int], bytes]


def _range(start: int, end: int, get: Get) -> bytes:
    """MTH of leaves [start, end), ``start`` aligned to the largest power of two below."""
    n = end - start
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        return get(level, start >> level)
    k = _split(n)
    return node_hash(_range(start, start + k, get), _range(start + k, end, get))


def _path(index: int, start: int, n: int, get: Get) -> list[bytes]:
    if n == 1:
        return []
    k = _split(n)
    if index < start + k:
        return [*_path(index, start, k, get), _range(start + k, start + n, get)]
    return [*_path(index, start + k, n - k, get), _range(start, start + k, get)]


def _subproof(m: int, start: int, n: int, complete: bool, get: Get) -> list[bytes]:
    if m == n:
        return [] if complete else [_range(start, start + n, get)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, start, k, complete, get), _range(start + k, start + n, get)]
    return [*_subproof(m - k, start + k, n - k, False, get), _range(start, start + k, get)]


def _recorded(run: Callable[[Get], object]) -> set[Key]:
    keys: set[Key] = set()

    def note(level: int, index: int) -> bytes:
        keys.add((level, index))
        return bytes(32)

    run(note)
    return keys


def _getter(nodes: Mapping[Key, bytes]) -> Get:
    def get(level: int, index: int) -> bytes:
        try:
            return nodes[(level, index)]
        except KeyError:
            raise LookupError(f"the tree has no node at level {level}, index {index}") from None

    return get


def check_inclusion_args(index: int, size: int) -> None:
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")


def check_consistency_args(first: int, second: int) -> None:
    if not 0 <= first <= second:
        raise ValueError(f"a tree of {first} leaves cannot be proven within one of {second}")


def inclusion_keys(index: int, size: int) -> set[Key]:
    check_inclusion_args(index, size)
    return _recorded(lambda get: _path(index, 0, size, get))


def inclusion_proof(index: int, size: int, nodes: Mapping[Key, bytes]) -> list[bytes]:
    """RFC 9162 PATH(index, D[size]): the audit path, leaf's sibling first."""
    check_inclusion_args(index, size)
    return _path(index, 0, size, _getter(nodes))


def consistency_keys(first: int, second: int) -> set[Key]:
    check_consistency_args(first, second)
    if first in (0, second):
        return set()
    return _recorded(lambda get: _subproof(first, 0, second, True, get))


def consistency_proof(first: int, second: int, nodes: Mapping[Key, bytes]) -> list[bytes]:
    """RFC 9162 PROOF(first, D[second]); empty when ``first`` is 0 or equals ``second``."""
    check_consistency_args(first, second)
    if first in (0, second):
        return []
    return _subproof(first, 0, second, True, _getter(nodes))


def root_keys(size: int) -> set[Key]:
    return set(frontier_keys(size))


def root(size: int, nodes: Mapping[Key, bytes]) -> bytes:
    return root_of([nodes[k] for k in frontier_keys(size)])


def verify_inclusion(
    index: int, size: int, leaf_digest: bytes, proof: Sequence[bytes], root_hash: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf_digest
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root_hash


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2, with its edge cases: any tree extends the empty one, and a
    tree is consistent with itself when the roots are equal (both with an empty proof)."""
    if not 0 <= first <= second:
        return False
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0


class Frontier:
    """A tree's right edge only: appends leaves and gives the root at the current size in
    memory that grows with log(size). What verification recomputes the tree with, once per
    event, so it keeps only hashes: the level of each is implied by the size's bits."""

    def __init__(self) -> None:
        self.stack: list[bytes] = []  # the perfect subtrees' roots, largest first
        self.size = 0

    @classmethod
    def resume(cls, size: int, frontier: Sequence[bytes]) -> Frontier:
        """The right edge of a tree of ``size`` leaves, from its :func:`frontier_keys` hashes."""
        if len(frontier) != bin(size).count("1"):
            raise ValueError(f"a tree of {size} leaves has {bin(size).count('1')} edge nodes")
        made = cls()
        made.stack, made.size = list(frontier), size
        return made

    def add(self, digest: bytes) -> None:
        stack, size, sha256 = self.stack, self.size, hashlib.sha256
        while size & 1:  # each trailing one bit of the size is a subtree the leaf completes
            digest = sha256(b"\x01" + stack.pop() + digest).digest()
            size >>= 1
        stack.append(digest)
        self.size += 1

    def root(self) -> bytes:
        return root_of(self.stack)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return (self.size, self.stack) == (other.size, other.stack)

    __hash__ = None  # type: ignore[assignment]  # mutable


class Tree:
    """A whole tree in memory: the memory store's, the benchmarks' baseline, and the tests'
    reference. The PostgreSQL store keeps the same nodes in a table."""

    def __init__(self) -> None:
        self.nodes: dict[Key, bytes] = {}
        self.size = 0

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[Node]:
        frontier = [self.nodes[k] for k in frontier_keys(self.size)]
        made = append(self.size, frontier, leaf_hashes)
        for node in made:
            self.nodes[(node.level, node.index)] = node.hash
            if node.level == 0:
                self.size = node.index + 1
        return made

    def root(self, size: int | None = None) -> bytes:
        return root(self.size if size is None else size, self.nodes)

    def inclusion(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self.size if size is None else size, self.nodes)

    def consistency(self, first: int, second: int | None = None) -> list[bytes]:
        return consistency_proof(first, self.size if second is None else second, self.nodes)
