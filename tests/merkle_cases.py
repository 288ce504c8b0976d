"""Contract cases for the Merkle log, run against every recorder (see ``ledger_cases``)."""

from __future__ import annotations

import pytest

from ledger.application.service import Ledger
from ledger.integrity import proofs
from ledger.integrity.sources import store_items
from ledger.integrity.verify import verify
from ledger.storage import merkle
from tests.builders import REF, collect, disclose, erase, grant, withdraw
from tests.ledger_cases import BOB, OpenLedger, in_threads, ready


def recomputed(ledger: Ledger) -> merkle.Tree:
    """The tree the events make, rebuilt from their stored columns alone."""
    tree = merkle.Tree()
    rows = ledger.store.select_rows(1, 1_000_000)
    tree.extend(merkle.leaf_hash(merkle.leaf(*row)) for row in rows)
    return tree


class MerkleCases:
    def test_every_recorded_event_is_the_next_leaf(self, ledger: Ledger) -> None:
        ready(ledger)
        ledger.record([grant(REF), collect(REF), grant(BOB), disclose(BOB)])
        ledger.record([withdraw(REF)])

        rows = ledger.store.select_rows(1, 1000)
        store = ledger.store
        assert store.tree_size() == 0  # recording pays nothing for the tree...
        assert store.grow_tree(rows[3][0]) == 4  # ...which integrates the events in order
        assert store.grow_tree() == store.grow_tree() == len(rows)
        assert [store.leaf_index(r[0]) for r in rows] == list(range(len(rows)))
        assert [store.leaf_sequence(i) for i in range(len(rows))] == [r[0] for r in rows]
        assert store.tree_size(rows[2][0]) == 3
        tree = recomputed(ledger)
        assert proofs.root(store, len(rows)) == tree.root()
        assert store.merkle_nodes(tree.nodes) == tree.nodes  # every node stored, none else

    def test_every_event_has_an_inclusion_proof_that_verifies(self, ledger: Ledger) -> None:
        ready(ledger)
        ledger.record([grant(REF), collect(REF), grant(BOB)])
        sizes = [ledger.store.grow_tree()]
        ledger.record([disclose(BOB), erase(REF)])
        store = ledger.store
        for row in store.select_rows(1, 1000):
            for size in (None, *sizes):
                if size is not None and store.leaf_index(row[0]) >= size:  # type: ignore[operator]
                    continue
                proof = proofs.inclusion(store, row[0], size)
                assert proof.row == row and proof.verifies()
                edited = (*row[:4], row[4].replace(b'"', b"'", 1))
                leaf = merkle.leaf_hash(merkle.leaf(*edited))
                assert not merkle.verify_inclusion(
                    proof.index, proof.size, leaf, proof.path, proof.root
                )
        with pytest.raises(proofs.NotInTree):
            proofs.inclusion(store, 10_000)

    def test_each_size_is_consistent_with_every_later_one(self, ledger: Ledger) -> None:
        ready(ledger)
        sizes = [ledger.store.grow_tree()]
        for command in (grant(REF), collect(REF), grant(BOB), erase(REF)):
            ledger.record([command])
            sizes.append(ledger.store.grow_tree())
        for i, first in enumerate(sizes):
            for second in sizes[i:]:
                assert proofs.consistency(ledger.store, first, second).verifies()

    def test_a_producers_event_id_finds_its_event(self, ledger: Ledger) -> None:
        ready(ledger)
        granted = grant(REF)  # also registers the subject: two events for one command
        ledger.record([granted, collect(BOB)])
        sequence = ledger.store.event_sequence("acme", granted.envelope.event_id)
        assert sequence is not None
        row = ledger.store.select_rows(sequence, 1, sequence)[0]
        assert row[3].endswith("ConsentGranted")
        assert ledger.store.event_sequence("other-tenant", granted.envelope.event_id) is None
        assert ledger.store.event_sequence("acme", "no-such-event") is None

    def test_concurrent_writers_and_integrators_grow_one_tree(
        self, ledger: Ledger, open_same_store: OpenLedger
    ) -> None:
        ready(ledger)
        writers = [ledger, open_same_store(), open_same_store()]

        def write(writer: Ledger, n: int) -> None:
            for i in range(5):
                writer.record([grant(f"m{n}-{i}@example.com"), collect(f"m{n}@example.com")])
                writer.store.grow_tree()  # every writer integrates too, all at once

        in_threads(writers, write)

        report = verify(store_items(ledger.store))
        assert report.ok and report.tree.size == ledger.store.grow_tree()
        assert proofs.root(ledger.store, report.tree.size) == report.tree.root()
