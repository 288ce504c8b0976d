"""The chain on the Kafka ledger topic: the relay attaches links and signs checkpoints, and a
dump of the topic verifies on its own — and fails where it was tampered with."""

from __future__ import annotations

import base64
import copy
import secrets
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from consumers.relay import Relay
from ledger.application.service import Ledger
from ledger.cli.main import app
from ledger.cli.processes import checkpointer
from ledger.integrity import audit
from ledger.integrity.topic import TopicDump, mismatches, read_topic
from ledger.kafka.admin import ensure_topics
from ledger.kafka.producer import make_producer
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings, load
from tests.builders import REF, collect, erase, grant
from tests.ledger_cases import BOB, ready


@pytest.fixture
def environ(settings_environ: dict[str, str], topics: object) -> dict[str, str]:
    ledger_topic = settings_environ["LEDGER_TOPIC_LEDGER"]
    return {
        **settings_environ,
        "LEDGER_CHECKPOINT_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "LEDGER_TOPIC_CHECKPOINTS": f"{ledger_topic}.checkpoints",
        "LEDGER_CHECKPOINT_EVERY": "5",
    }


@pytest.fixture
def published(environ: dict[str, str]) -> Iterator[tuple[Settings, Ledger]]:
    """A small ledger, published by a relay that checkpoints every 5 events."""
    s = load(environ)
    ensure_topics(s.require_kafka(), {s.topics.checkpoints: 1})
    ledger = open_ledger(s)
    producer = make_producer(s.require_kafka())
    relay = Relay(
        ledger,
        producer,
        s.topics.ledger,
        batch_size=4,
        checkpointer=checkpointer(s, ledger, producer),
    )
    ready(ledger)
    ledger.record([grant(REF), collect(REF), grant(BOB)])
    ledger.record([erase(REF)])
    while relay.publish_once():
        pass
    yield s, ledger
    producer.close()
    ledger.close()


def test_a_topic_dump_verifies_with_its_checkpoints(
    published: tuple[Settings, Ledger], environ: dict[str, str]
) -> None:
    _, ledger = published
    result = CliRunner().invoke(app, ["audit", "verify", "--topic"], env=environ)
    assert result.exit_code == 0, result.output
    events = len(ledger.store.select_notifications(1, 1000))
    assert f"{events} events, {events} chain links" in result.output
    assert result.output.count("holds") >= 2
    assert REF not in result.output


def _audit(s: Settings, dump: TopicDump) -> audit.Audit:
    return audit.run("topic", dump.items, dump.checkpoints, None, mismatches(dump))


def test_a_tampered_dump_fails_at_the_tampered_record(published: tuple[Settings, Ledger]) -> None:
    s, _ = published
    dump = read_topic(s.require_kafka(), s.topics.ledger, s.topics.checkpoints)
    assert _audit(s, dump).ok

    changed = copy.deepcopy(dump)
    changed.by_sequence[6]["chain"]["state"] += b" "
    first = _audit(s, changed).first
    assert first is not None and (first.position, first.reason) == (6, "changed")

    relabelled = copy.deepcopy(dump)
    relabelled.by_sequence[7]["tenant"] = "globex"
    first = _audit(s, relabelled).first
    assert first is not None and (first.position, first.reason) == (7, "mismatch")

    missing = copy.deepcopy(dump)
    del missing.by_sequence[5]
    first = _audit(s, missing).first
    assert first is not None and (first.position, first.reason) == (5, "deleted")
