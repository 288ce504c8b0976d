"""At the ledger's size: an inclusion proof for every event of a 100,000-event ledger on
PostgreSQL verifies against the signed root, and a single changed byte in any event breaks
its proof; the stored tree of a ledger that predates the Merkle log is built on upgrade."""

from __future__ import annotations

import random
from contextlib import closing
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger.bench import replay
from ledger.bench.ingest import workload
from ledger.bench.setup import TENANT, catalogue
from ledger.integrity import proofs
from ledger.integrity.checkpoint_store import CheckpointTable, make_checkpoint
from ledger.integrity.checkpoints import CheckpointSigner, new_private_key
from ledger.integrity.sources import store_items
from ledger.integrity.verify import verify
from ledger.process.runtime import open_ledger, open_reader
from ledger.process.settings import Settings
from ledger.storage import merkle

EVENTS = 100_000


def seeded(s: Settings, events: int) -> None:
    """The benchmarks' ledger: their tenant and purposes, then ``events`` events, signed."""
    with closing(open_ledger(s)) as ledger:
        ledger.register_tenant(TENANT, "Benchmark")
        ledger.record(catalogue())
    replay.seed(s, events)


def stored_nodes(store: Any, size: int) -> dict[merkle.Key, bytes]:
    """Every stored node, read level by level (what the proofs below are computed from)."""
    nodes: dict[merkle.Key, bytes] = {}
    for level in range(size.bit_length()):
        start = 0
        while True:
            page = store.merkle_level(level, start, 50_000)
            nodes.update(((level, i), h) for i, h in page)
            if len(page) < 50_000:
                break
            start = page[-1][0] + 1
    return nodes


def test_every_event_of_a_100k_ledger_has_a_proof_and_any_changed_byte_breaks_it(
    settings_db_only: Settings,
) -> None:
    seeded(settings_db_only, EVENTS)  # ~100,000 events and a signed checkpoint
    with psycopg.connect(settings_db_only.require_database(), autocommit=True) as conn:
        signed = CheckpointTable(conn, settings_db_only.database_schema).latest()
    assert signed is not None and signed.root is not None and signed.tree_size is not None
    size, root = signed.tree_size, signed.root
    with closing(open_reader(settings_db_only)) as reader:
        store = reader.store
        assert size == store.tree_size() >= EVENTS
        nodes = stored_nodes(store, size)
        assert merkle.root(size, nodes) == root
        rows = [row for page in store_items(store).pages() for row in page.rows]
        assert len(rows) == size
        rng = random.Random(17)
        for index, row in enumerate(rows):
            leaf = merkle.leaf(*row)
            path = merkle.inclusion_proof(index, size, nodes)
            assert merkle.verify_inclusion(index, size, merkle.leaf_hash(leaf), path, root), row[0]
            at = rng.randrange(len(leaf))
            changed = leaf[:at] + bytes([leaf[at] ^ 1 << rng.randrange(8)]) + leaf[at + 1 :]
            assert not merkle.verify_inclusion(
                index, size, merkle.leaf_hash(changed), path, root
            ), (row[0], at)
        for row in rng.sample(rows, 300):  # the served path: the same proofs, from SQL
            served = proofs.inclusion(store, row[0], size)
            assert served.verifies() and served.root == root
            assert served.path == merkle.inclusion_proof(served.index, size, nodes)


def test_a_ledger_recorded_before_the_merkle_log_gets_its_tree_on_upgrade(
    settings_db_only: Settings,
) -> None:
    seeded(settings_db_only, 2_000)
    schema = settings_db_only.database_schema
    with closing(open_reader(settings_db_only)) as reader:
        before = proofs.root(reader.store, reader.store.grow_tree())
    with psycopg.connect(settings_db_only.require_database(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE {}.merkle").format(sql.Identifier(schema)))
        conn.execute(  # the seed's checkpoint as one signed before the Merkle log
            sql.SQL("UPDATE {}.checkpoints SET tree_size = NULL, root = NULL, note = NULL").format(
                sql.Identifier(schema)
            )
        )
    with closing(open_ledger(settings_db_only)) as upgraded:  # creates the table, then fills it
        report = verify(store_items(upgraded.store))
        assert report.ok and upgraded.store.grow_tree() == report.tree.size
        assert proofs.root(upgraded.store, report.tree.size) == report.tree.root() == before
        upgraded.record(workload(1, "after-upgrade"))
        with psycopg.connect(settings_db_only.require_database(), autocommit=True) as conn:
            table = CheckpointTable(conn, schema)
            signer = CheckpointSigner(new_private_key())
            made = make_checkpoint(upgraded.store, table, signer, 10**9)
            assert made is not None and made.tree_size == upgraded.store.tree_size()
            assert made.root == proofs.root(upgraded.store, made.tree_size)


@pytest.fixture(autouse=True)
def _quiet_seed(capsys: pytest.CaptureFixture[str]) -> None:
    """``seed`` prints its progress; the test asserts on what it made instead."""
