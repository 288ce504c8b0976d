"""``ledger bench query``, ``freshness``, ``replay`` and ``soak`` run as a user runs them, briefly.

They must print their figures and their baselines, answer every request correctly (a wrong
answer counts as an error and is printed), and leave no schema behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import psycopg
import pytest

FIGURE = r"p50 +[\d.]+ ms +p99 +[\d.]+ ms +max +[\d.]+ ms +n=[\d,]+$"


def bench(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ledger.cli.main", "bench", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def bench_schemas(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\\_%'")
        return {name for (name,) in rows}


@pytest.fixture
def env(database_url: str, kafka_bootstrap: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return {**clean, "LEDGER_DATABASE_URL": database_url, "LEDGER_KAFKA_BOOTSTRAP": kafka_bootstrap}


def test_bench_query_prints_api_and_baseline_latency(
    env: dict[str, str], database_url: str
) -> None:
    before = bench_schemas(database_url)
    out = bench(
        "query", "--rate", "100", "--seconds", "2", "--subjects", "60", "--batch-size", "25",
        env=env,
    )  # fmt: skip
    assert re.search(r"purpose check, 200 requests at 100/s", out), out
    assert re.search(r"API  POST /v1/purpose-check +" + FIGURE, out, re.M), out
    assert len(re.findall(r"baseline: same SQL straight +" + FIGURE, out, re.M)) == 2, out
    assert "target p99 <= 10 ms at 200/s:" in out  # below 200/s, the first target
    # Then the batch route: pages of 25 pairs (60 subjects, so pages wrap around), each checked.
    assert re.search(r"batch purpose checks, 100 pages of 25 pairs at 50/s", out), out
    assert re.search(r"API  POST /v1/purpose-checks +" + FIGURE, out, re.M), out
    assert "target p99 <= 10 ms for 100 pairs at 50/s:" in out
    assert bench_schemas(database_url) - before == set()  # its own schemas are gone


def test_bench_ingest_prints_each_path_the_producer_and_both_session_kems(
    env: dict[str, str], database_url: str
) -> None:
    before = bench_schemas(database_url)
    out = bench("ingest", "--events", "400", "--single", "40", "--batch", "100", env=env)
    rate = r" +[\d,]+ events/s"
    assert re.search(r"^one save per event" + rate, out, re.M), out
    assert re.search(r"^batched save, no Kafka" + rate + r"  \(batch 100\)", out, re.M), out
    producer = r"^producer: seal \+ produce" + rate + r"  \("
    hybrid, x25519 = "HPKE-MLKEM768X25519-session-v2", "HPKE-X25519-session-v2"
    for variant in (f"{hybrid}, kafka-python", f"{hybrid}, librdkafka", f"{x25519}, kafka-python"):
        assert re.search(producer + variant + r", [\d,]+ bytes", out, re.M), out
    assert re.search(r"^Kafka → ingest → ledger" + rate + r"  \(400 events\)", out, re.M), out
    assert re.search(r"^end to end / batched save = [\d.]+", out, re.M), out
    assert bench_schemas(database_url) - before == set()


def test_bench_freshness_prints_end_to_end_and_kafka_hop(
    env: dict[str, str], database_url: str
) -> None:
    before = bench_schemas(database_url)
    out = bench("freshness", "--samples", "5", env=env)
    assert re.search(r"Kafka -> ingest -> ledger -> view -> API +" + FIGURE, out, re.M), out
    assert re.search(r"baseline: Kafka hop alone +" + FIGURE, out, re.M), out
    assert "target p99 <= 25 ms:" in out
    assert re.search(r"hop by hop \(5 samples timed at both commits\)", out), out
    for hop in (
        r"producer -> broker acknowledged",
        r"-> ledger committed \(ingest\)",
        r"-> consent view committed",
        r"-> API answers no \(asked every 2 ms\)",
    ):
        assert re.search(r"^    " + hop + " +" + FIGURE, out, re.M), (hop, out)
    assert bench_schemas(database_url) - before == set()  # its own schemas are gone


def test_bench_replay_prints_replay_verification_and_raw_read(
    env: dict[str, str], database_url: str
) -> None:
    before = bench_schemas(database_url)
    out = bench("replay", "--events", "500", env=env)
    figure = r" +502 events in +[\d.]+ s +[\d,]+ events/s"
    assert re.search(r"^raw read \(baseline\)" + figure + "$", out, re.M), out
    assert re.search(r"^verification alone" + figure + "  ok=True$", out, re.M), out
    assert re.search(r"^replay \+ verification" + figure + "  ok=True$", out, re.M), out
    assert re.search(r"^verification alone / raw read = \d+\.\d\d of the rate", out, re.M), out
    assert re.search(r"^replay \+ verification / raw read = \d+\.\d\d of the rate", out, re.M), out
    assert "target for 100,000 events: under 30 s" in out
    assert bench_schemas(database_url) - before == set()  # its own schemas are gone


def test_bench_soak_samples_memory_and_lag_and_gives_verdicts(
    env: dict[str, str], database_url: str
) -> None:
    before = bench_schemas(database_url)
    args = ["--minutes", "0.25", "--rate", "50", "--query-rate", "10", "--sample-seconds", "4"]
    out = bench("soak", *args, env=env)
    samples = re.findall(
        r"^ +\d+ +[\d,]+ +[\d,]+ +[\d,]+ +[\d,]+  ingest \d+ +relay \d+", out, re.M
    )
    assert len(samples) >= 3, out
    for name in ("ingest", "relay", "project", "serve"):
        assert re.search(rf"^  {name} +[\d.]+ -> +[\d.]+ -> +[\d.]+ MB", out, re.M), out
    assert re.search(r"purpose checks at 10/s: p50 +[\d.]+ ms", out), out
    assert re.search(r"rejected 0; query errors 0; processes that died: none", out), out
    assert "verdict: memory flat yes; lag bounded yes; errors 0" in out, out
    assert bench_schemas(database_url) - before == set()  # its own schemas are gone
