"""What every benchmark stands on: servers, a fresh schema, the ledger's own processes.

Each run uses a new schema (and new topics) of the configured PostgreSQL and broker, or
embedded ones started for the run when none is configured, and removes its schemas after.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from ledger.domain.values import LegalBasis
from ledger.keys.crypto import new_secret
from ledger.keys.crypto_ingest import IngestPublicKey
from ledger.plumbing import children
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings
from ledger.servers.apache import ApacheKafka
from ledger.servers.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from ledger.wire.contract import Command, Envelope, new_event_id

TENANT = "bench"
PURPOSE = "newsletter"


def catalogue() -> list[Command]:
    env = Envelope(new_event_id(), TENANT, None, datetime.now(UTC), "bench")
    facts = {
        "purpose": PURPOSE,
        "consent_text": "News by e-mail.",
        "consent_text_version": "1",
        "required": False,
        "legal_basis": LegalBasis.CONSENT,
        "description": "",
    }
    return [Command("PurposeDefined", env, facts, {})]


KAFKA_ENGINES = ("tansu", "apache")


@contextlib.contextmanager
def services(base: Settings, *, broker: bool = True, kafka: str = "tansu") -> Iterator[Settings]:
    """The configured database and broker, or embedded ones for the run (no broker if the
    benchmark needs none): the development broker, or one Apache Kafka node with
    ``kafka="apache"``; keys for the run."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if not base.database_url:
            postgres = stack.enter_context(EmbeddedPostgres(tmp / "pg"))
            base = base.with_overrides(database_url=postgres.url)
        if broker and not base.kafka_bootstrap:
            if kafka == "apache":
                bootstrap = stack.enter_context(ApacheKafka(1, data_dir=tmp / "kafka")).bootstrap
            else:
                bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap
                base = base.with_overrides(kafka_fetch_wait_ms=EmbeddedBroker.FETCH_WAIT_MS)
            base = base.with_overrides(kafka_bootstrap=bootstrap)
        if base.kek is None or base.lookup_key is None:
            base = base.with_overrides(kek=new_secret(), lookup_key=new_secret())
        yield base


@contextlib.contextmanager
def fresh_schema(base: Settings) -> Iterator[Settings]:
    """Settings for a new schema holding a ledger with the bench tenant and its purpose; the
    schema and the projections' schemas beside it are dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    s = base.with_overrides(database_schema=schema)
    ledger = open_ledger(s)
    try:
        ledger.register_tenant(TENANT, "Benchmark")  # producers seal: see ingest_key()
        ledger.record(catalogue())
    finally:
        ledger.close()
    try:
        yield s
    finally:
        drop_schemas(s.require_database(), schema)


def ingest_key(s: Settings) -> IngestPublicKey:
    """The public key the bench's producers seal personal fields to, as real producers do."""
    ledger = open_ledger(s)
    try:
        return ledger.ingest_keys.public_key_for(TENANT)
    finally:
        ledger.close()


def drop_schemas(database_url: str, schema: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s",
            [schema, schema + "\\_%"],
        ).fetchall()
        for (name,) in found:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def child_env(s: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a ``ledger`` process use exactly these settings."""
    kek, lookup_key = s.require_keys()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env = {
        **inherited,
        "LEDGER_DATABASE_URL": s.require_database(),
        "LEDGER_DATABASE_SCHEMA": s.database_schema,
        "LEDGER_KEK": base64.b64encode(kek).decode(),
        "LEDGER_KEK_ID": s.kek_id,
        "LEDGER_LOOKUP_KEY": base64.b64encode(lookup_key).decode(),
        "LEDGER_TOPIC_INGEST": s.topics.ingest,
        "LEDGER_TOPIC_REJECTED": s.topics.rejected,
        "LEDGER_TOPIC_LEDGER": s.topics.ledger,
        "LEDGER_INGEST_GROUP": s.ingest_group,
        "LEDGER_KAFKA_FETCH_WAIT_MS": str(s.kafka_fetch_wait_ms),
        "LEDGER_API_WORKERS": str(s.api_workers),
        "LEDGER_PURPOSE_CACHE_SUBJECTS": str(s.purpose_cache_subjects),
        "LEDGER_API_HOST": s.api_host,
        "LEDGER_API_PORT": str(s.api_port),
        "LEDGER_LOG_FORMAT": "json",
        **extra,
    }
    if s.kafka_bootstrap:
        env["LEDGER_KAFKA_BOOTSTRAP"] = s.kafka_bootstrap
    return env


@contextlib.contextmanager
def processes(s: Settings, commands: Sequence[str]) -> Iterator[Settings]:
    """``ledger COMMAND`` for each command, on these settings and a free API port; their
    output goes to a file whose tail is shown if one of them dies."""
    s = s.with_overrides(api_port=free_port())
    with tempfile.TemporaryFile() as output:
        procs = [children.spawn(c, child_env(s), output=output) for c in commands]
        try:
            yield s
            dead = [c for c, p in zip(commands, procs, strict=True) if p.poll() is not None]
            if dead:
                raise RuntimeError(f"ledger {', '.join(dead)} exited during the run")
        except BaseException:
            children.stop(procs)
            output.seek(0)
            tail = output.read().decode(errors="replace").splitlines()[-20:]
            print("output of the ledger processes (last lines):", *tail, sep="\n  ")
            raise
        children.stop(procs)


def wait_for_api(s: Settings, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(s.api_host, s.api_port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    raise RuntimeError(f"the API did not answer on port {s.api_port} within {timeout_s:.0f} s")
