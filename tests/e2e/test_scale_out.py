"""Two ``ledger ingest`` processes in one consumer group split the ingest topic's partitions:
each records a share, every event is recorded once, and each subject's events keep the order
they were produced in (they share a message key, hence a partition, hence one consumer)."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import psycopg
from psycopg import sql

from ledger.client import LedgerClient
from ledger.process.runtime import open_ledger
from ledger.process.settings import load
from tests import builders as b
from tests.e2e.test_processes import Process, count_facts, env, ledger_command, processes
from tests.e2e.test_shutdown import log_events
from tests.kafka_helpers import wait_until

__all__ = ["env", "processes"]  # fixtures
SUBJECTS = 150  # four events each


def recorded_by(log: Path) -> int:
    return sum(e["recorded"] for e in log_events(log) if e["event"] == "batch_recorded")


def ledger_order(database_url: str, schema: str) -> dict[str, list[str]]:
    """Each subject's recorded facts' event ids, in the order of its aggregate's versions."""
    query = sql.SQL(
        "SELECT originator_id, convert_from(state, 'UTF8')::json->>'event_id' "
        "FROM {}.ledger_events WHERE topic LIKE %s AND topic NOT LIKE %s "
        "ORDER BY originator_id, originator_version"
    ).format(sql.Identifier(schema))
    order: dict[str, list[str]] = defaultdict(list)
    with psycopg.connect(database_url) as conn:
        for subject, event_id in conn.execute(query, ["%Subject.%", "%Registered"]):
            order[str(subject)].append(event_id)
    return order


def test_two_consumers_split_the_partitions_and_keep_each_subjects_order(
    env: dict[str, str], processes: list[Process], tmp_path: Path
) -> None:
    settings = load(env)
    ledger = open_ledger(settings)
    ledger.register_tenant(b.TENANT, "Acme")
    ledger.record([b.define_purpose()])
    key = ledger.ingest_keys.public_key_for(b.TENANT)
    ledger.close()
    bootstrap = settings.require_kafka()
    database_url, schema = settings.require_database(), settings.database_schema

    logs = {name: tmp_path / f"ingest-{name}.log" for name in ("A", "B")}
    for log in logs.values():
        processes.append(Process(ledger_command("ingest"), env, log))
    produced: dict[str, list[str]] = {}  # subject reference → its event ids, in sending order
    topic = settings.topics.ingest
    with LedgerClient(bootstrap, producer="crm", topic=topic, ingest_key=key) as c:
        # Until the group has settled with both members holding partitions, one grant at a
        # time (a different subject, so a different key, each time) ...
        for i in range(200):
            if all(recorded_by(log) for log in logs.values()):
                break
            ref = f"warm-up-{i}@example.com"
            produced[ref] = [c.send_command(b.grant(ref))]
            c.flush()
            time.sleep(0.25)
        # ... then the load: four events per subject, sent in order.
        for i in range(SUBJECTS):
            ref = f"user-{i}@example.com"
            commands = (b.grant(ref), b.collect(ref), b.disclose(ref), b.withdraw(ref))
            produced[ref] = [c.send_command(command) for command in commands]
    total = sum(len(ids) for ids in produced.values())
    wait_until(lambda: count_facts(database_url, schema)[0] >= total, timeout=30, what="all")

    # Every event once, and each subject's in the order it was produced.
    assert count_facts(database_url, schema) == (total, total)
    recorded = sorted(ledger_order(database_url, schema).values())
    assert recorded == sorted(produced.values())

    # Both consumers did part of the work.
    shares = {name: recorded_by(log) for name, log in logs.items()}
    print(", ".join(f"consumer {name}: {n} events" for name, n in shares.items()))
    assert sum(shares.values()) == total
    assert all(n > 0 for n in shares.values())
    assert all(p.stop() == 0 for p in processes)
