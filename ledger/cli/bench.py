"""``ledger bench ingest``: throughput of Kafka → ingest → ledger, with its baselines.

Three figures from one run, each on a fresh schema of the same PostgreSQL:

1. **one save per event** — ``Ledger.record([event])``: one `eventsourcing` save (one
   transaction) per event, the naive design;
2. **batched save** — ``Ledger.record(batch)``: the ledger's own batched save, no Kafka;
3. **end to end** — the events are first produced to a fresh ingest topic (timed apart), then
   ``IngestConsumer.run`` — the loop ``ledger ingest`` runs — consumes, decodes, validates,
   records and commits them. Timed from the first fetched batch (the consumer group join is
   reported separately) until the last batch is committed.

The workload is realistic rather than flattering: every subject is new (a data key is made
and wrapped, the reference sealed and looked up) and gets a consent grant, a collection, a
disclosure under consent and a withdrawal, with IP address, user agent and free text sealed.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from psycopg import sql

from consumers.ingest import BatchReport, IngestConsumer
from ledger import logs
from ledger.application import Ledger
from ledger.cli.common import settings as load_settings
from ledger.client import LedgerClient
from ledger.contract import Command, Envelope, new_event_id
from ledger.domain.values import LegalBasis
from ledger.embedded import EmbeddedBroker, EmbeddedPostgres
from ledger.kafka.admin import default_partitions, ensure_topics
from ledger.kafka.consumer import make_consumer
from ledger.kafka.producer import make_producer
from ledger.runtime import open_ledger
from ledger.settings import Settings, Topics

bench = typer.Typer(help="Benchmarks that print their figures and baselines.", no_args_is_help=True)
TENANT = "bench"


def workload(subjects: int, run: str) -> list[Command]:
    """Four events per new subject; purposes are defined separately (see ``catalogue``)."""
    now = datetime.now(UTC)
    out: list[Command] = []
    for i in range(subjects):
        ref = f"{run}-subject-{i}@example.com"

        def env(ref: str = ref) -> Envelope:
            return Envelope(new_event_id(), TENANT, ref, now, "bench")

        sealed_web = {"ip_address": "198.51.100.23", "user_agent": "Mozilla/5.0 bench"}
        out += [
            Command(
                "ConsentGranted",
                env(),
                {"purpose": "newsletter", "consent_text_version": "1", "source": "signup-form"},
                {**sealed_web, "evidence": None},
            ),
            Command(
                "PersonalDataCollected",
                env(),
                {
                    "purpose": "newsletter",
                    "categories": ["contact.email"],
                    "source": "data-subject",
                },
                {"description": "newsletter sign-up form"},
            ),
            Command(
                "DataDisclosed",
                env(),
                {
                    "recipient": "Mailer Co",
                    "purpose": "newsletter",
                    "categories": ["contact.email"],
                    "legal_basis": LegalBasis.CONSENT,
                    "reference": "DPA-1",
                },
                {"note": None},
            ),
            Command(
                "ConsentWithdrawn",
                env(),
                {"purpose": "newsletter", "source": "app"},
                {"evidence": None},
            ),
        ]
    return out


def catalogue() -> list[Command]:
    env = Envelope(new_event_id(), TENANT, None, datetime.now(UTC), "bench")
    facts = {
        "purpose": "newsletter",
        "consent_text": "News by e-mail.",
        "consent_text_version": "1",
        "required": False,
        "legal_basis": LegalBasis.CONSENT,
        "description": "",
    }
    return [Command("PurposeDefined", env, facts, {})]


@contextlib.contextmanager
def fresh_ledger(base: Settings) -> Iterator[Ledger]:
    """A ledger on a new schema of the configured database, dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    ledger = open_ledger(base.with_overrides(database_schema=schema))
    ledger.register_tenant(TENANT, "Benchmark")
    ledger.record(catalogue())
    try:
        yield ledger
    finally:
        ledger.close()
        with psycopg.connect(base.require_database(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _rate(events: int, seconds: float) -> str:
    return f"{events / seconds:>8,.0f} events/s  ({events:,} events in {seconds:.2f} s)"


def one_save_per_event(base: Settings, commands: Sequence[Command]) -> float:
    with fresh_ledger(base) as ledger:
        started = time.perf_counter()
        for command in commands:
            ledger.record([command])
        return len(commands) / (time.perf_counter() - started)


def batched(base: Settings, commands: Sequence[Command], batch: int) -> float:
    with fresh_ledger(base) as ledger:
        started = time.perf_counter()
        for i in range(0, len(commands), batch):
            outcomes = ledger.record(commands[i : i + batch])
            assert all(o.status == "recorded" for o in outcomes)
        return len(commands) / (time.perf_counter() - started)


def end_to_end(base: Settings, commands: Sequence[Command], batch: int) -> float:
    bootstrap = base.require_kafka()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    topics = Topics(f"{prefix}.ingest", f"{prefix}.rejected", f"{prefix}.ledger")
    ensure_topics(bootstrap, default_partitions(topics))
    started = time.perf_counter()
    with LedgerClient(bootstrap, producer="bench", topic=topics.ingest) as client:
        for command in commands:
            client.send_command(command)
    typer.echo(
        f"  (producing them to Kafka first: {_rate(len(commands), time.perf_counter() - started)})"
    )
    with fresh_ledger(base) as ledger:
        consumer = IngestConsumer(
            ledger,
            make_consumer(bootstrap, group=f"{prefix}-ingest"),
            make_producer(bootstrap),
            topics,
            batch_size=batch,
        )
        stop = threading.Event()
        done: list[float] = []  # per report: when its batch was first read
        handled = 0

        def on_report(report: BatchReport) -> None:
            nonlocal handled
            assert report.rejected == 0, "benchmark events must all be valid"
            done.append(time.perf_counter() - report.seconds)
            handled += report.messages
            if handled >= len(commands):
                stop.set()

        subscribed = time.perf_counter()
        consumer.run(stop, on_report)  # the loop `ledger ingest` runs
        finished = time.perf_counter()
        first = min(done)
        typer.echo(f"  (consumer group join and first fetch took {first - subscribed:.2f} s)")
        elapsed = finished - first
        consumer.consumer.close()
        consumer.producer.close()
    return len(commands) / elapsed


@contextlib.contextmanager
def services(base: Settings) -> Iterator[Settings]:
    """The configured database and broker, or embedded ones for the run."""
    with contextlib.ExitStack() as stack:
        if not base.database_url:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            postgres = stack.enter_context(EmbeddedPostgres(tmp / "pg"))
            base = base.with_overrides(database_url=postgres.url)
        if not base.kafka_bootstrap:
            broker = stack.enter_context(EmbeddedBroker())
            base = base.with_overrides(kafka_bootstrap=broker.bootstrap)
        if base.kek is None:
            from ledger.crypto import new_secret

            base = base.with_overrides(kek=new_secret(), lookup_key=new_secret())
        yield base


@bench.command("ingest")
def ingest(
    events: Annotated[
        int, typer.Option(help="Events for the batched and end-to-end runs.")
    ] = 20_000,
    single: Annotated[int, typer.Option(help="Events for the one-save-per-event run.")] = 2_000,
    batch: Annotated[int, typer.Option(help="Batch size (ingest max poll records).")] = 500,
) -> None:
    """Print events/s for one save per event, the batched save, and Kafka end to end."""
    base = load_settings()
    logs.configure(base.log_format, level=logs.WARNING)
    run = uuid.uuid4().hex[:6]
    with services(base) as s:
        where = (s.database_url or "").split("@")[-1]
        typer.echo(f"database {where}, broker {s.kafka_bootstrap}")
        per_event = one_save_per_event(s, workload(max(1, single // 4), run + "a"))
        typer.echo(f"one save per event      {per_event:>8,.0f} events/s")
        commands = workload(max(1, events // 4), run + "b")
        base_rate = batched(s, commands, batch)
        typer.echo(f"batched save, no Kafka  {base_rate:>8,.0f} events/s  (batch {batch})")
        e2e = end_to_end(s, workload(max(1, events // 4), run + "c"), batch)
        typer.echo(f"Kafka → ingest → ledger {e2e:>8,.0f} events/s  ({len(commands):,} events)")
        typer.echo(
            f"end to end / batched save = {e2e / base_rate:.2f}; "
            f"batched / one save per event = {base_rate / per_event:.1f}x"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(bench, name="bench")
