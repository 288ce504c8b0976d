"""``ledger bench proofs`` run as a user runs it, briefly; and a wrong stored node fails it.

It must print the rebuild baseline and the proofs' figures, verify every proof, leave no
schema behind, and fail (non-zero exit) rather than print figures for proofs that are wrong.
"""

from __future__ import annotations

import os
import re

import psycopg
import pytest
from psycopg import sql

from ledger.bench import proofs
from ledger.bench.replay import seed
from ledger.bench.setup import fresh_schema
from ledger.process.settings import Settings
from tests.e2e.test_bench import bench, bench_schemas

LATENCY = r" +p50 +[\d.]+ ms +p95 +[\d.]+ ms +p99 +[\d.]+ ms +max +[\d.]+ ms"


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return {**clean, "LEDGER_DATABASE_URL": database_url}  # no broker: the bench needs none


def test_bench_proofs_prints_proofs_and_the_rebuild_baseline(
    env: dict[str, str], database_url: str
) -> None:
    before = bench_schemas(database_url)
    out = bench("proofs", "--events", "500", "--proofs", "40", "--seed", "7", env=env)
    assert re.search(r"^tree size 502 leaves, [\d,]+ stored merkle rows; seed 7$", out, re.M), out
    baseline = r" +502 events in +[\d.]+ s  -> [\d,.]+ proofs/s"
    assert re.search(r"^baseline: rebuild root" + baseline, out, re.M), out
    assert re.search(r"^baseline: rebuild Tree \+ 1 proof" + baseline + r".*ok=True$", out, re.M)
    rate = r" +40 proofs +[\d,]+ proofs/s"
    for kind in ("inclusion", "consistency"):
        line = rf"^{kind} proofs" + rate + LATENCY + r" +verified 40/40$"
        assert re.search(line, out, re.M), (kind, out)
    closing = r"^inclusion proof p99 [\d.]+ ms vs rebuilding the tree [\d.]+ s \([\d,]+"
    closing += "\N{MULTIPLICATION SIGN}" + r" faster\)"
    assert re.search(closing, out, re.M), out
    assert "target at 100,000 events: p99 well under 10 ms" in out
    assert bench_schemas(database_url) - before == set()  # its own schema is gone


def test_a_stored_node_that_is_wrong_fails_the_run(
    settings_db_only: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    with fresh_schema(settings_db_only) as s:
        seed(s, 500)  # 502 leaves: the root is folded from (8, 0), (7, 2), (6, 6) ...
        with psycopg.connect(s.require_database(), autocommit=True) as conn:
            # (7, 0), leaves 0-127, is in no root: only the proofs of leaves 128-255 use it.
            conn.execute(
                sql.SQL("UPDATE {}.merkle SET hash = %s WHERE level = 7 AND idx = 0").format(
                    sql.Identifier(s.database_schema)
                ),
                [bytes(32)],
            )
        with pytest.raises(proofs.ProofsFailed, match="proofs failed; first: the"):
            proofs.measure(s, count=60, seconds=30, seed_value=7)
    out = capsys.readouterr().out
    assert re.search(r"^inclusion proofs +60 proofs .* FAILED \(first: ", out, re.M), out
