"""``ledger dev``: the whole service on the embedded default, in one process tree.

It starts a private PostgreSQL and a Kafka broker (data under ``--data-dir``) — Tansu, the
memory-only development broker, or with ``--kafka apache`` one Apache Kafka node whose data is
kept in ``<data-dir>/kafka`` (its jars are fetched with Maven on first use) — then
the ingest consumer, the relay, the projections and the query API as child processes,
restarting a child that dies. Ctrl-C stops the children first (each finishes its batch), then
the broker, then PostgreSQL. If ``ledger dev`` itself is killed, its children and the broker
stop too (PostgreSQL is started detached by its own tooling and is not covered by this).

Each child's log lines go to this command's stderr and to ``<data-dir>/logs/<process>.log``
(rotated, bounded: :class:`ledger.plumbing.children.ChildLogs`); the broker's to
``<data-dir>/broker.log``, PostgreSQL's to ``<data-dir>/postgres/log``.

While it runs, ``<data-dir>/dev.json`` tells other ``ledger`` commands started in the same
directory where the database and broker are, so ``ledger demo`` needs no configuration.
Development keys are kept in ``<data-dir>/dev-keys.json`` (mode 0600) so recorded data stays
readable across restarts; production takes keys from the environment instead. They include a
checkpoint signing key, so the relay ``ledger dev`` starts signs checkpoints as production's
does. A key is only ever added to that file, never replaced: a file from an earlier version
gains the keys it lacks and keeps the others unchanged.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ledger.cli.common import fail, invocation, stop_on_signals
from ledger.cli.keys import before_serving
from ledger.integrity.checkpoints import new_private_key
from ledger.keys.crypto import new_secret
from ledger.plumbing import logs
from ledger.plumbing.children import ChildLogs
from ledger.plumbing.children import stop as stop_children
from ledger.process.runtime import open_ledger
from ledger.process.settings import DEV_STATE_FILE, load
from ledger.servers.apache import ApacheKafka
from ledger.servers.embedded import EmbeddedBroker, EmbeddedPostgres, EmbeddedServerError, free_port
from projections.api.app import prepare

CHILDREN = ("ingest", "relay", "project", "serve", "notify")
RESTART_DELAY_S = 2.0
STOP_GRACE_S = 15.0


# Each development key and how a new one is made (32 bytes, as production's keys are).
DEV_KEYS: dict[str, Callable[[], bytes]] = {
    "LEDGER_KEK": new_secret,
    "LEDGER_LOOKUP_KEY": new_secret,
    "LEDGER_CHECKPOINT_KEY": new_private_key,
    "LEDGER_DOCUMENT_KEY": new_private_key,
}


def _dev_keys(data_dir: Path) -> dict[str, str]:
    """The keys in ``<data-dir>/dev-keys.json``, after adding any of :data:`DEV_KEYS` it lacks.

    Keys already in the file are returned unchanged (the KEK and lookup key decide whether
    recorded data can be read); the file is rewritten only when a key was added.
    """
    path = data_dir / "dev-keys.json"
    keys: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    added = {
        name: base64.b64encode(make()).decode()
        for name, make in DEV_KEYS.items()
        if name not in keys
    }
    if added:
        keys = {**keys, **added}
        _write_private(path, keys)
    return keys


def _write_private(path: Path, content: dict[str, str]) -> None:
    """Writes ``path`` readable by its owner only, whole or not at all: the content goes to a
    temporary file that then replaces ``path``, so a crash never leaves half a key file."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)  # a leftover would keep its own mode
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(content, out, indent=2)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


class KafkaEngine(StrEnum):
    tansu = "tansu"
    apache = "apache"


def _broker(engine: KafkaEngine, data_dir: Path, port: int) -> EmbeddedBroker | ApacheKafka:
    if engine is KafkaEngine.apache:
        typer.echo("starting Apache Kafka (the first start fetches its jars with Maven)", err=True)
        return ApacheKafka(1, data_dir=data_dir / "kafka", port=port)
    return EmbeddedBroker(port=port, log_path=data_dir / "broker.log")


def _port(requested: int) -> int:
    try:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", requested))
        return requested
    except OSError:
        return free_port()


def dev(
    data_dir: Annotated[
        Path,
        typer.Option(
            envvar="LEDGER_DATA_DIR",
            help="Where PostgreSQL data, keys, dev.json and logs (logs/<process>.log) live.",
        ),
    ] = Path(".ledger"),
    kafka_port: Annotated[
        int, typer.Option(help="Broker port (another is chosen if taken).")
    ] = 9092,
    api_port: Annotated[
        int, typer.Option(help="Query API port (another is chosen if taken).")
    ] = 8600,
    kafka: Annotated[
        KafkaEngine,
        typer.Option(
            help="Broker: tansu (memory only, starts at once) or apache (Apache Kafka, Java 17, "
            "data kept in DATA_DIR/kafka)."
        ),
    ] = KafkaEngine.tansu,
) -> None:
    """Run everything locally: PostgreSQL, a broker, ingest, relay, projections and the API."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    fmt = os.environ.get("LEDGER_LOG_FORMAT") or "auto"
    logs.configure(fmt)
    if fmt == "auto":  # the children write to a pipe: they follow this terminal instead
        fmt = "console" if sys.stderr.isatty() else "json"
    log = logs.get("dev")
    postgres = EmbeddedPostgres(data_dir / "postgres")
    broker = _broker(kafka, data_dir, _port(kafka_port))
    state_file = data_dir / DEV_STATE_FILE
    children: dict[str, subprocess.Popen[bytes]] = {}
    child_logs = ChildLogs(data_dir / "logs")
    try:
        try:
            database_url = postgres.start()
            bootstrap = broker.start()
        except EmbeddedServerError as exc:
            fail(str(exc), code=1)
        state = {
            "LEDGER_DATABASE_URL": database_url,
            "LEDGER_KAFKA_BOOTSTRAP": bootstrap,
            "LEDGER_DATA_DIR": str(data_dir),
            "LEDGER_API_PORT": str(_port(api_port)),
            **_dev_keys(data_dir),
        }
        # A checkpoint a minute while anything new was published (production: 10 minutes),
        # so a developer sees signed checkpoints without waiting; the environment may override.
        env = {
            "LEDGER_CHECKPOINT_INTERVAL": "1m",
            **_broker_defaults(kafka),
            **os.environ,
            **state,
            "LEDGER_LOG_FORMAT": fmt,
        }
        open_ledger(load(env)).close()  # create schema and tables once, before the children
        prepare(load(env))
        before_serving(load(env))  # erasures the database lacks, before the children start
        _write_private(state_file, state)
        stop = stop_on_signals()
        for name in CHILDREN:
            children[name] = child_logs.spawn(name, env)
        _banner(data_dir, bootstrap, int(state["LEDGER_API_PORT"]))
        while not stop.wait(0.5):
            for name, proc in children.items():
                if proc.poll() is not None:
                    log.error("child_exited", process=name, code=proc.returncode)
                    time.sleep(RESTART_DELAY_S)
                    children[name] = child_logs.spawn(name, env)
        log.info("dev_stopping")
    finally:
        stop_children(children.values(), STOP_GRACE_S)
        child_logs.close()
        state_file.unlink(missing_ok=True)
        broker.stop()
        postgres.stop()
    log.info("dev_stopped")


def _broker_defaults(engine: KafkaEngine) -> dict[str, str]:
    """Settings the development broker needs (the environment may override them): see
    :class:`EmbeddedBroker` on its fetch wait."""
    if engine is not KafkaEngine.tansu:
        return {}
    return {"LEDGER_KAFKA_FETCH_WAIT_MS": str(EmbeddedBroker.FETCH_WAIT_MS)}


def _banner(data_dir: Path, bootstrap: str, api_port: int) -> None:
    cwd = Path.cwd()
    where = "" if data_dir == (cwd / ".ledger") else f" (LEDGER_DATA_DIR={data_dir})"
    cmd = invocation()
    typer.secho(
        f"\ncompliance ledger running: broker {bootstrap}, PostgreSQL in {data_dir / 'postgres'}, "
        f"query API http://127.0.0.1:{api_port}/docs, console "
        f"http://127.0.0.1:{api_port}/console/, privacy center "
        f"http://127.0.0.1:{api_port}/privacy/, logs in {data_dir / 'logs'}",
        fg=typer.colors.GREEN,
        bold=True,
        err=True,
    )
    typer.echo(
        f"In another terminal, in this directory{where}:\n"
        f"  {cmd} demo                      send sample events, good and bad, then query them;\n"
        "                                   it prints a console key and a privacy-center link\n"
        f"  {cmd} subject show --tenant demo --ref alice@example.com\n"
        f"  {cmd} topic tail ledger         what the relay published\n"
        f"  {cmd} topic tail rejected       refused messages and why\n"
        f"  {cmd} project status            how far each projection is behind\n"
        f"  {cmd} apikeys create demo --scope auditor   a key for the query API\n"
        "Ctrl-C stops everything.\n",
        err=True,
    )


def register(app: typer.Typer) -> None:
    app.command()(dev)
