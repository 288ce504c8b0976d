"""The Merkle log's arithmetic (``ledger.storage.merkle``) against RFC 9162 read literally."""

from __future__ import annotations

import hashlib

import pytest

from ledger.storage import merkle
from ledger.storage.chain import row_hash

# RFC 6962's test leaves, whose roots other implementations (certificate-transparency-go,
# Trillian) publish: MTH of the first 1…8 of them.
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, recursively, over raw leaves."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return merkle.leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH."""
    if len(leaves) <= 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1 SUBPROOF."""
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*subproof(m, leaves[:k], complete), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def tree_of(leaves: list[bytes], chunks: tuple[int, ...] = (3, 1, 36)) -> merkle.Tree:
    """A tree grown in uneven appends, as batches of events grow the stored one."""
    tree, start = merkle.Tree(), 0
    for size in (*chunks, len(leaves)):
        tree.extend(merkle.leaf_hash(x) for x in leaves[start : start + size])
        start += size
    return tree


def test_roots_are_rfc_6962s():
    tree = tree_of(LEAVES, (2, 3))
    assert [tree.root(n).hex() for n in range(1, 9)] == ROOTS
    assert merkle.Tree().root() == hashlib.sha256(b"").digest()


LONG = [i.to_bytes(2, "big") for i in range(70)]


def test_stored_nodes_give_the_rfc_root_path_and_consistency_proof_for_every_size():
    tree = tree_of(LONG)
    for n in range(1, len(LONG) + 1):
        assert tree.root(n) == mth(LONG[:n])
        for m in range(n):
            assert tree.inclusion(m, n) == path(m, LONG[:n]), (m, n)
        for m in range(1, n):
            assert tree.consistency(m, n) == subproof(m, LONG[:n], True), (m, n)


def test_a_proof_reads_only_the_nodes_it_names():
    tree = tree_of(LONG)
    for n in (1, 2, 5, 64, 70):
        for m in range(n):
            keys = merkle.inclusion_keys(m, n)
            assert len(keys) <= 2 * n.bit_length()
            named = {k: tree.nodes[k] for k in keys}
            assert merkle.inclusion_proof(m, n, named) == tree.inclusion(m, n)


def test_inclusion_proofs_verify_and_any_change_breaks_them():
    tree = tree_of(LONG)
    for n in range(1, len(LONG) + 1):
        root = tree.root(n)
        for m in range(n):
            proof, leaf = tree.inclusion(m, n), merkle.leaf_hash(LONG[m])
            assert merkle.verify_inclusion(m, n, leaf, proof, root)
            assert not merkle.verify_inclusion(m, n, merkle.leaf_hash(LONG[m] + b"!"), proof, root)
            if proof:
                bent = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
                assert not merkle.verify_inclusion(m, n, leaf, bent, root)
                assert not merkle.verify_inclusion(m, n, leaf, proof[:-1], root)


def test_consistency_proofs_verify_and_a_rewritten_history_fails():
    tree = tree_of(LONG)
    rewritten = tree_of([*LONG[:10], b"rewritten", *LONG[11:]])
    for n in range(1, len(LONG) + 1):
        for m in range(0, n + 1):
            proof = tree.consistency(m, n)
            assert merkle.verify_consistency(m, n, tree.root(m), tree.root(n), proof), (m, n)
            if 10 < m < n:
                # the old root was signed; the log now serves a history with leaf 10 changed
                forged = rewritten.consistency(m, n)
                assert not merkle.verify_consistency(m, n, tree.root(m), rewritten.root(n), forged)


@pytest.mark.parametrize(("first", "second"), [(0, 0), (0, 5), (5, 5), (4, 8)])
def test_edge_cases_of_consistency(first: int, second: int):
    tree = tree_of(LONG)
    proof = tree.consistency(first, second)
    assert merkle.verify_consistency(first, second, tree.root(first), tree.root(second), proof)
    assert not merkle.verify_consistency(
        second + 1, second, tree.root(first), tree.root(second), proof
    )


def test_the_frontier_recomputes_the_stored_root_in_little_memory():
    tree, frontier = tree_of(LONG), merkle.Frontier()
    for n, raw in enumerate(LONG, start=1):
        frontier.add(merkle.leaf_hash(raw))
        assert frontier.root() == tree.root(n)
        assert len(frontier.stack) == bin(n).count("1")
    resumed = merkle.Frontier.resume(37, [tree.nodes[k] for k in merkle.frontier_keys(37)])
    for raw in LONG[37:]:
        resumed.add(merkle.leaf_hash(raw))
    assert resumed == frontier


def test_a_leaf_covers_every_stored_column_and_its_sequence():
    base = (
        7,
        "2e618f49-0da5-4e02-9cfa-302e5ea0f8f4",
        2,
        "ledger.domain.subject:Subject.ConsentGranted",
        b'{"a":1}',
    )
    leaf = merkle.leaf(*base)
    assert leaf.startswith(b"ledger-leaf-v1" + (7).to_bytes(8, "big"))
    for i in range(len(base)):
        changed = list(base)
        changed[i] = changed[i] + (1 if isinstance(changed[i], int) else changed[i][:1])
        assert merkle.leaf(*changed) != leaf
    # pinned for other implementations (docs/audit.md repeats it)
    assert merkle.leaf_hash(leaf).hex() == PINNED_LEAF_HASH


PINNED_LEAF_HASH = "9261bacb9874751b5edc6afa3d2e16dfc0549b21b679f47a19b04dd2685dfdaf"


def test_verifications_shared_encoding_gives_the_chain_link_and_the_leaf():
    row = (7, "2e618f49-0da5-4e02-9cfa-302e5ea0f8f4", 2, "ledger.domain.subject:Subject.X", b"{}")
    previous_hash = bytes(range(32))
    link, leaf = merkle.link_and_leaf(previous_hash, row, 5)
    assert link == row_hash(previous_hash, row, 5)
    assert leaf == merkle.leaf_hash(merkle.leaf(*row))
