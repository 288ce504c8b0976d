"""``ledger bench``: benchmarks that print their figures beside a baseline from the same run.

Each runs on the configured PostgreSQL and broker (``LEDGER_DATABASE_URL``,
``LEDGER_KAFKA_BOOTSTRAP``), or on embedded ones it starts, in fresh schemas and topics that
it removes afterwards. See the modules of ``ledger.bench`` for what each one measures.
"""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer

from ledger.bench import freshness, ingest, proofs, query, replay, soak
from ledger.bench.setup import KAFKA_ENGINES, fresh_schema, services
from ledger.cli.common import fail
from ledger.cli.common import settings as load_settings
from ledger.plumbing import logs
from ledger.process.settings import MAX_API_WORKERS, Settings
from projections.api.models import MAX_PURPOSE_CHECKS

bench = typer.Typer(help="Benchmarks that print their figures and baselines.", no_args_is_help=True)
_engine = {"kafka": "tansu"}


@bench.callback()
def choose_broker(
    kafka: Annotated[
        str,
        typer.Option(
            help="Broker to start when LEDGER_KAFKA_BOOTSTRAP is unset: tansu (the development "
            "broker) or apache (one Apache Kafka node; needs Java 17+ and Maven)."
        ),
    ] = "tansu",
) -> None:
    """Benchmarks on the configured servers, or on ones started for the run."""
    if kafka not in KAFKA_ENGINES:
        raise typer.BadParameter(
            f"expected one of {', '.join(KAFKA_ENGINES)}", param_hint="--kafka"
        )
    _engine["kafka"] = kafka


def _services(s: Settings, *, broker: bool = True) -> contextlib.AbstractContextManager[Settings]:
    return services(s, broker=broker, kafka=_engine["kafka"])


def _settings() -> Settings:
    s = load_settings()
    logs.configure(s.log_format, level=logs.WARNING)
    return s


def _where(s: Settings) -> None:
    database = (s.database_url or "").split("@")[-1]
    broker = f"{s.kafka_bootstrap} ({_engine['kafka']})" if s.kafka_bootstrap else "(none)"
    typer.echo(f"database {database}, broker {broker}")


@bench.command("ingest")
def ingest_command(
    events: Annotated[
        int, typer.Option(help="Events for the batched and end-to-end runs.")
    ] = 20_000,
    single: Annotated[int, typer.Option(help="Events for the one-save-per-event run.")] = 2_000,
    batch: Annotated[int, typer.Option(help="Batch size (ingest max poll records).")] = 500,
    session_scheme: Annotated[
        str | None,
        typer.Option(
            help="Sealing session KEM: HPKE-MLKEM768X25519-session-v2 (the client's default) "
            "or HPKE-X25519-session-v2."
        ),
    ] = None,
) -> None:
    """Events/s for one save per event, the batched save, the producer, and Kafka end to end."""
    with _services(_settings()) as s:
        _where(s)
        ingest.run(s, events=events, single=single, batch=batch, session_scheme=session_scheme)


@bench.command("query")
def query_command(
    rate: Annotated[float, typer.Option(help="Requests per second.")] = 200.0,
    seconds: Annotated[float, typer.Option(help="How long to measure at that rate.")] = 20.0,
    connections: Annotated[int, typer.Option(help="Concurrent keep-alive connections.")] = 8,
    subjects: Annotated[int, typer.Option(help="Subjects in the view.")] = 5_000,
    batch_size: Annotated[
        int,
        typer.Option(
            min=0,
            max=MAX_PURPOSE_CHECKS,
            help="Pairs a page for POST /v1/purpose-checks (0: skip that run).",
        ),
    ] = 100,
    batch_rate: Annotated[float, typer.Option(help="Pages a second for the batch run.")] = 50.0,
    workers: Annotated[
        int, typer.Option(min=1, max=MAX_API_WORKERS, help="`ledger serve --workers`.")
    ] = 1,
) -> None:
    """Purpose-check latency p50/p99 through `ledger serve`, and the same SQL straight; then
    the batch route's, likewise."""
    # A broker too: `ledger serve` reconciles erasures from the ledger topic before serving.
    with _services(_settings()) as base, fresh_schema(base) as s:
        _where(s)
        s = s.with_overrides(api_workers=workers)
        count = max(1, int(rate * seconds))
        batches = None
        if batch_size > 0:
            batches = query.Batches(batch_size, batch_rate, max(1, int(batch_rate * seconds)))
        query.run(
            s, subjects=subjects, rate=rate, count=count, workers=connections, batches=batches
        )


@bench.command("freshness")
def freshness_command(
    samples: Annotated[int, typer.Option(help="Withdrawals to time.")] = 100,
) -> None:
    """Time from a withdrawal produced on Kafka to the purpose check answering no."""
    with _services(_settings()) as base, fresh_schema(base) as s:
        _where(s)
        freshness.run(s, samples=samples)


@bench.command("replay")
def replay_command(
    events: Annotated[int, typer.Option(help="Events in the ledger to replay.")] = 100_000,
) -> None:
    """Replay + verification time against the event store's raw read rate."""
    with _services(_settings(), broker=False) as base, fresh_schema(base) as s:
        _where(s)
        replay.run(s, events=events)


@bench.command("proofs")
def proofs_command(
    events: Annotated[int, typer.Option(help="Events in the ledger to prove.")] = 100_000,
    count: Annotated[
        int, typer.Option("--proofs", min=1, help="Proofs of each kind (inclusion, consistency).")
    ] = 2_000,
    seconds: Annotated[
        float, typer.Option(help="At most this long for each kind of proof.")
    ] = 60.0,
    seed: Annotated[
        int,
        typer.Option(
            help="Random seed choosing the events and sizes proven (0: a new one, printed)."
        ),
    ] = 0,
) -> None:
    """Inclusion and consistency proof latency from the stored Merkle nodes, against building
    the tree from every event."""
    with _services(_settings(), broker=False) as base, fresh_schema(base) as s:
        _where(s)
        try:
            proofs.run(s, events=events, count=count, seconds=seconds, seed_value=seed)
        except proofs.ProofsFailed as exc:
            fail(str(exc), code=1)


@bench.command("soak")
def soak_command(
    minutes: Annotated[float, typer.Option(help="How long to hold the load.")] = 5.0,
    rate: Annotated[float, typer.Option(help="Events per second produced.")] = 100.0,
    query_rate: Annotated[float, typer.Option(help="Purpose checks per second.")] = 20.0,
    sample_seconds: Annotated[float, typer.Option(help="Seconds between samples.")] = 15.0,
    subject_cache: Annotated[
        int | None,
        typer.Option(
            help="LEDGER_SUBJECT_CACHE_SIZE and LEDGER_PURPOSE_CACHE_SUBJECTS for the processes "
            "(default: theirs)."
        ),
    ] = None,
) -> None:
    """A steady load with queries for minutes: memory, lag and errors, sampled."""
    with _services(_settings()) as base, fresh_schema(base) as s:
        _where(s)
        soak.run(
            s,
            minutes=minutes,
            rate=rate,
            query_rate=query_rate,
            sample_s=sample_seconds,
            subject_cache=subject_cache,
        )


def register(app: typer.Typer) -> None:
    app.add_typer(bench, name="bench")
