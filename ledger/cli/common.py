"""What every command needs: settings with readable errors, logging, and stop signals."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

import psycopg
import typer
from eventsourcing import persistence
from kafka.errors import KafkaError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from ledger.application.service import Ledger
from ledger.domain.rules import RuleViolation
from ledger.kafka.admin import BrokerUnavailable, admin_client
from ledger.kafka.diagnosis import explain
from ledger.plumbing import logs
from ledger.plumbing.backoff import Backoff
from ledger.process.runtime import open_ledger
from ledger.process.settings import ConfigError, Settings, load

log = logs.get("process")

DATABASE_DOWN = (persistence.OperationalError, persistence.InterfaceError, psycopg.Error)


def fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def kafka_refused(bootstrap: str, exc: Exception) -> str:
    """The one-line error of a process Kafka would not serve for another reason than a refused
    login or certificate (those are waited out: :func:`wait_until_kafka_admits`)."""
    return f"cannot use Kafka at {bootstrap}: {explain(exc)}; not starting"


def wait_until_kafka_admits(s: Settings, stop: threading.Event) -> None:
    """Waits, before a process uses Kafka, until the broker accepts its login and certificate.

    Rules it keeps:

    - **A broker that answers but does not admit us is waited out, not crashed on.** A refused
      SASL login, an untrusted broker certificate, or a broker that takes TCP connections but
      does not complete a metadata request is logged as one line (``kafka_refused``: the
      broker, the cause with what to check where it is known, when the next try is) and
      retried with backoff, so a user created or a CA fixed on the broker's side is picked up
      without a restart loop. Nothing has been read yet, so nothing is lost by waiting.
    - **No broker at all is not waited for**: when nothing accepts a TCP connection, or no
      Kafka is configured, the caller's own start-up error applies (exit code 2).
    - **A stop signal while waiting exits cleanly** (code 0). ``stop`` is the command's own
      event from :func:`stop_on_signals`, made before this wait: a signal that arrives while
      the command starts must reach its main loop, not a handler that is gone by then.
    """
    if not s.kafka_bootstrap:
        return
    backoff = Backoff()
    while True:
        try:
            with admin_client(s.kafka_bootstrap) as admin:
                admin.describe_cluster()  # ApiVersions alone is answered before the login
                return
        except KafkaError as exc:
            wait = backoff.failed()
            log.warning(
                "kafka_refused",
                bootstrap=s.kafka_bootstrap,
                reason=explain(exc),
                retry_in_s=round(wait, 1),
            )
        except BrokerUnavailable:
            return
        if stop.wait(wait):
            raise typer.Exit(0)


def settings() -> Settings:
    try:
        loaded = load()
    except ConfigError as exc:
        fail(str(exc))
    logs.configure(loaded.log_format)
    return loaded


def ledger(s: Settings | None = None) -> Ledger:
    """The ledger on the configured database, or a clear error and exit code 2."""
    try:
        return open_ledger(s or settings())
    except ConfigError as exc:
        fail(str(exc))
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")


def change_tenant(change: Callable[[Ledger], bool]) -> bool:
    """Runs a tenant policy change on the configured ledger; a refusal is a clean exit 1."""
    app = ledger()
    try:
        return change(app)
    except RuleViolation as exc:
        fail(exc.detail, code=1)
    finally:
        app.close()


def stop_on_signals(grace: timedelta | None = None) -> threading.Event:
    """An event set by SIGINT, SIGTERM or SIGHUP (the terminal closed), so a loop can finish
    its batch and exit cleanly — and ``ledger dev`` can stop the servers it started.

    With ``grace`` (``LEDGER_SHUTDOWN_GRACE``), the stop is bounded: once the event is set, a
    process still running ``grace`` later (its batch cannot finish: the database or broker
    is gone) logs ``shutdown_grace_expired`` and exits with status 1. Nothing is lost by
    that: a batch is committed whole or not at all, and its input is read again on restart.
    """
    stop = threading.Event()
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)  # no logging here: the main thread may be mid-write
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)
    if grace is not None:
        threading.Thread(
            target=_exit_after_grace, args=(stop, received, grace), name="shutdown", daemon=True
        ).start()
    return stop


def _exit_after_grace(stop: threading.Event, received: list[int], grace: timedelta) -> None:
    """Exits ``grace`` after the stop, whatever happens to the log lines on the way: a child
    whose parent died writes into a pipe nobody reads any more (BrokenPipeError), and a
    failed log line must not end this thread and leave the process running for ever."""
    stop.wait()
    try:
        name = signal.Signals(received[0]).name if received else None
        _quietly(log.info, "shutdown_requested", signal=name, grace_s=grace.total_seconds())
        time.sleep(grace.total_seconds())
        _quietly(log.error, "shutdown_grace_expired", grace_s=grace.total_seconds())
        _quietly(sys.stderr.flush)
    finally:
        os._exit(1)


def _quietly(write: Callable[..., object], *args: object, **kwargs: object) -> None:
    with suppress(OSError, ValueError):  # a closed or broken stream
        write(*args, **kwargs)


def invocation() -> str:
    """How the user can call this same ``ledger`` from another terminal."""
    me = Path(sys.argv[0]).resolve()
    on_path = shutil.which("ledger")
    if me.name != "ledger" or (on_path and Path(on_path).resolve() == me):
        return "ledger"
    return os.path.relpath(me) if me.is_relative_to(Path.cwd()) else str(me)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A bar for a pass over the ledger (rebuild, replay); yields ``report(position, head)``."""
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task(label, total=None)

        def report(position: int, head: int) -> None:
            bar.update(task, completed=position, total=max(head, position))

        yield report
