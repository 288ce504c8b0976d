"""A backup restored after an erasure: ``ledger keys reconcile`` re-applies the erasure from
the ledger topic, with a real pg_dump/pg_restore, PostgreSQL, relay and broker."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from consumers.relay import Relay
from ledger.application.service import Ledger
from ledger.cli.main import app
from ledger.domain.subject import Subject
from ledger.erasure.reconcile import reconcile_configured
from ledger.kafka.producer import make_producer
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings, load
from ledger.servers.embedded import free_port
from ledger.wire import avro
from tests.builders import IP, REF, TENANT, erase, grant
from tests.kafka_helpers import read_topic
from tests.ledger_cases import BOB, ready, reasons, statuses, subject_id
from tests.pg_tools import new_database, pg_tool, run_ledger

__all__ = ["new_database"]  # fixture


def publish(ledger: Ledger, settings: Settings) -> None:
    """What ``ledger relay`` does: every recorded event onto the ledger topic."""
    producer = make_producer(settings.require_kafka())
    try:
        relay = Relay(ledger, producer, settings.topics.ledger)
        while relay.publish_once():
            pass
    finally:
        producer.close()


def topic_erasures(settings: Settings) -> list[dict[str, object]]:
    def done(records: list[object]) -> bool:
        return any(dict(r.headers)["event_type"] == b"KeysShredded" for r in records)

    records = read_topic(settings.require_kafka(), settings.topics.ledger, until=done)
    decoded = [avro.decode(r.value)[1] for r in records]
    return [d for d in decoded if d["event_type"] == "KeysShredded"]


def test_a_restored_backup_does_not_serve_a_subject_erased_after_it(
    settings: Settings,
    settings_environ: dict[str, str],
    database_url: str,
    new_database: Callable[[], str],
    tmp_path: Path,
) -> None:
    ledger = ready(open_ledger(settings))
    assert statuses(ledger.record([grant(REF, ip_address=IP), grant(BOB)])) == ["recorded"] * 2
    alice, bob = subject_id(ledger, REF), subject_id(ledger, BOB)
    assert alice is not None and bob is not None
    publish(ledger, settings)
    reconcile_configured(settings)  # as every process does on start: offsets are saved
    backup = tmp_path / "ledger.dump"
    pg_dump, pg_restore = (pg_tool(name, database_url) for name in ("pg_dump", "pg_restore"))
    dump = [pg_dump, "-Fc", "-n", settings.database_schema, "-f", backup, database_url]
    subprocess.run(dump, check=True)
    assert statuses(ledger.record([erase(REF, "erase-alice")])) == ["recorded"]
    publish(ledger, settings)
    ledger.close()

    restored_url = new_database()
    subprocess.run([pg_restore, "--no-owner", "-d", restored_url, backup], check=True)
    env = {**settings_environ, "LEDGER_DATABASE_URL": restored_url}
    restored = open_ledger(load(env))
    assert restored.store.wrapped_keys([alice]), "the backup holds the erased subject's key"

    result = run_ledger(env, "keys", "reconcile")

    assert result.returncode == 0, result.stderr
    assert "1 subjects shredded now (1 with KeysShredded recorded again)" in result.stdout
    assert restored.store.wrapped_keys([alice]) == {}
    assert subject_id(restored, REF) is None
    assert restored.store.erased_refs(TENANT, [restored.keys.digest(TENANT, REF)])
    [on_topic] = topic_erasures(settings)
    shredded = restored.subject_events(alice)[-1]
    assert isinstance(shredded, Subject.KeysShredded)
    assert shredded.event_id == on_topic["event"][1]["envelope"]["event_id"]
    assert reasons(restored.record([grant(REF)])) == ["subject_erased"]

    registered = restored.subject_events(bob)[0]
    assert restored.keys.open(bob, "subject_ref", registered.subject_ref) == BOB
    assert subject_id(restored, BOB) == bob
    # New events get sequences above every one published, so consumers do not drop them.
    newest = restored.store.select_notifications(1, 10_000)[-1]
    assert newest.originator_id == alice and newest.id > int(on_topic["sequence"])

    events = len(restored.store.select_notifications(1, 10_000))
    again = reconcile_configured(load(env))
    assert (again.records_read, again.changed) == (0, 0)
    assert len(restored.store.select_notifications(1, 10_000)) == events
    restored.close()


def test_serving_does_not_start_when_the_ledger_topic_cannot_be_read(
    settings_environ: dict[str, str],
) -> None:
    env = {**settings_environ, "LEDGER_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    result = CliRunner().invoke(app, ["serve"], env=env)
    assert result.exit_code == 2
    assert "cannot read the ledger topic" in result.output
    assert "not starting" in result.output
