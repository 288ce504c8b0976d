"""``ledger bench replay``: an auditor's replay with verification, against the raw read rate.

Seeds a ledger (new subjects, each granted, collected, disclosed and withdrawn, as ``ledger
bench ingest`` does; a signed checkpoint at the end), then measures in the same run:

1. **raw read** (the baseline): every stored event's row read from the event store in the
   pages and the form verification and the replay read them (bare tuples), nothing decoded
   or hashed — the floor any replay stands on;
2. **verification alone**: what ``ledger audit verify`` does (chain and checkpoint);
3. **replay and verification**: what ``ledger replay --as-of`` does — one pass that verifies
   the chain and checkpoint and applies every event to the three views in scratch schemas.

Targets, as rates against the raw read's in the same run (both printed): verification alone
at least 0.8 of it, replay and verification at least 0.3; and 100,000 events in under 30 s.
"""

from __future__ import annotations

import time
from contextlib import closing
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from ledger.bench.ingest import workload
from ledger.integrity import audit
from ledger.integrity.checkpoint_store import CheckpointTable, make_checkpoint
from ledger.integrity.checkpoints import CheckpointSigner, new_private_key
from ledger.integrity.sources import BATCH, store_items
from ledger.process.runtime import open_ledger, open_reader
from ledger.process.settings import Settings
from projections.replay import service
from projections.replay.registry import Replays

EVENTS_PER_SUBJECT = 5  # registered, granted, collected, disclosed, withdrawn


def seed(s: Settings, events: int, batch: int = 500) -> int:
    """Records about ``events`` events and signs a checkpoint; returns the ledger's head."""
    commands = workload(max(1, events // EVENTS_PER_SUBJECT), f"replay{time.time_ns()}")
    started = time.perf_counter()
    with closing(open_ledger(s)) as ledger:
        for i in range(0, len(commands), batch):
            outcomes = ledger.record(commands[i : i + batch])
            assert all(o.status == "recorded" for o in outcomes)
        head = ledger.store.max_notification_id() or 0
        with psycopg.connect(s.require_database(), autocommit=True) as conn:
            signer = CheckpointSigner(new_private_key())
            make_checkpoint(ledger.store, CheckpointTable(conn, s.database_schema), signer, head)
    print(f"seeded {head:,} events in {time.perf_counter() - started:.1f} s")
    _settle(s)
    return head


def _settle(s: Settings) -> None:
    """Vacuums the new rows, as autovacuum does to a ledger at rest: otherwise whichever read
    comes first pays for setting their hint bits (the raw read measured twice as slow). The
    Merkle log's table too, which ``ledger bench proofs`` reads."""
    with psycopg.connect(s.require_database(), autocommit=True) as conn:
        for table in ("ledger_events", "chain", "merkle"):
            conn.execute(
                sql.SQL("VACUUM (ANALYZE) {}.{}").format(
                    sql.Identifier(s.database_schema), sql.Identifier(table)
                )
            )


def raw_read(s: Settings) -> tuple[int, float]:
    with closing(open_reader(s)) as reader:
        started = time.perf_counter()
        count, start = 0, 1
        while True:
            page = reader.store.select_rows(start, BATCH)  # the read verification does
            count += len(page)
            if len(page) < BATCH:
                return count, time.perf_counter() - started
            start = page[-1][0] + 1


def verify_only(s: Settings) -> tuple[int, float, bool]:
    with closing(open_reader(s)) as reader:
        started = time.perf_counter()
        with psycopg.connect(s.require_database(), autocommit=True) as conn:
            table = CheckpointTable(conn, s.database_schema)
            checkpoints, keys = table.all(), table.public_keys()
        result = audit.run(
            "event store", store_items(reader.store), checkpoints, list(keys.values())
        )
        return result.report.events, time.perf_counter() - started, result.ok


def replay_and_verify(s: Settings) -> tuple[int, float, bool]:
    with Replays.connect(s) as replays, closing(open_reader(s)) as reader:
        started = time.perf_counter()
        row = service.start(replays, datetime.now(UTC), "bench")
        built = service.run(s, reader, replays, row)
        elapsed = time.perf_counter() - started
        replays.drop(row.replay_id)
    held = bool(built.audit.checkpoints) and all(c.holds for c in built.audit.checkpoints)
    return built.applied, elapsed, built.audit.ok and held


def _line(label: str, events: int, seconds: float, extra: str = "") -> None:
    rate = events / seconds if seconds else float("inf")
    print(f"{label:<26}{events:>9,} events in {seconds:6.2f} s  {rate:>9,.0f} events/s{extra}")


def run(s: Settings, *, events: int) -> None:
    seed(s, events)
    count, raw = raw_read(s)
    _line("raw read (baseline)", count, raw)
    verified, verify_s, ok = verify_only(s)
    _line("verification alone", verified, verify_s, f"  ok={ok}")
    applied, replay_s, ok = replay_and_verify(s)
    _line("replay + verification", applied, replay_s, f"  ok={ok}")
    print(
        f"verification alone / raw read = {_ratio(verified, verify_s, count, raw)} "
        f"of the rate (target >= 0.8)"
    )
    print(
        f"replay + verification / raw read = {_ratio(applied, replay_s, count, raw)} "
        f"of the rate (target >= 0.3); target for 100,000 events: under 30 s"
    )


def _ratio(events: int, seconds: float, base_events: int, base_seconds: float) -> str:
    """This rate as a fraction of the baseline's (1.00: as fast as reading the rows)."""
    return f"{(events / seconds) / (base_events / base_seconds):.2f}"
