"""One Apache Kafka node of :class:`ledger.servers.apache.ApacheKafka`: its files and its JVM.

A node is a directory ``node-<i>/`` holding ``server.properties``, ``log4j2.properties``, the
storage in ``data/``, and two logs: ``server.log`` (the broker's own, WARN and above unless
asked otherwise) and ``stdout.log`` (what the JVM prints, e.g. a crash before logging starts).

Rules this module keeps:

- **A node's JVM is a child that dies with its parent**, in its own process group, so a
  signal reaches that JVM and nothing else.
- **Storage is formatted only where it is not yet** (``--ignore-formatted``), with one cluster
  id for all nodes of a cluster.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ledger.kafka.admin import replication_factor
from ledger.plumbing.children import dies_with_this_process

HOST = "127.0.0.1"
# C1 only and the serial collector: measured here, a node serves about a second sooner
# (3 s instead of 4-5 s on 2 cores), and test loads never need C2's peak throughput.
DEFAULT_JVM_OPTIONS: tuple[str, ...] = (
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)
_FORMAT_TIMEOUT_S = 60.0
_LOG_TAIL_LINES = 20
_LOG4J2 = """\
status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = FILE
"""


class NodeError(RuntimeError):
    """A node's storage could not be formatted or its JVM not run."""


@dataclass(frozen=True)
class Jvm:
    """How to run a Kafka main class: the java binary, the jars, the JVM options."""

    java: str
    libs: Path
    options: tuple[str, ...] = DEFAULT_JVM_OPTIONS

    def command(self, node: Node, main: str) -> list[str]:
        return [
            self.java,
            *self.options,
            f"-Dlog4j2.configurationFile={node.home / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            main,
        ]


@dataclass
class Node:
    index: int
    home: Path
    port: int
    controller_port: int
    extra_ports: dict[str, int]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    frozen: bool = False  # SIGSTOPped and not yet SIGCONTinued

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def formatted(self) -> bool:
        return (self.home / "data" / "meta.properties").exists()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def port_of(self, listener: str) -> int:
        name = listener.upper()
        if name == "PLAINTEXT":
            return self.port
        if name not in self.extra_ports:
            known = ["PLAINTEXT", *sorted(self.extra_ports)]
            raise ValueError(f"no listener {listener!r}; this node has {known}")
        return self.extra_ports[name]

    def write_config(self, config: Mapping[str, str], log_level: str) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in config.items()]
        self.properties_file.write_text("\n".join(lines) + "\n")
        (self.home / "log4j2.properties").write_text(
            _LOG4J2.format(log=self.home / "server.log", level=log_level)
        )

    def spawn(self, jvm: Jvm) -> None:
        self.frozen = False
        out: IO[bytes] = (self.home / "stdout.log").open("ab")
        try:
            self.proc = subprocess.Popen(
                [*jvm.command(self, "kafka.Kafka"), str(self.properties_file)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=dies_with_this_process(),  # prctl, getppid: safe in the forked child
            )
        except OSError as exc:
            raise NodeError(f"could not run {jvm.java}: {exc}") from exc
        finally:
            out.close()

    def send(self, sig: signal.Signals) -> bool:
        """Sends ``sig`` to the node's process group; False if the node is not running."""
        if not self.running:
            return False
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        if sig == signal.SIGSTOP:
            self.frozen = True
        elif sig in (signal.SIGCONT, signal.SIGKILL):
            self.frozen = False
        return True

    def reap(self, deadline: float) -> None:
        """Waits for the JVM to exit until ``deadline`` (monotonic), then SIGKILLs it."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def log_tails(self) -> str:
        return "\n".join(
            f"node {self.index} {name}:\n{_tail(self.home / name)}"
            for name in ("server.log", "stdout.log")
        )


def broker_config(
    node: Node, cluster: Sequence[Node], listeners: Mapping[str, str]
) -> dict[str, str]:
    """The properties of ``node`` in ``cluster``: a combined broker and controller, static
    quorum of all nodes, internal topics replicated ``min(3, nodes)`` times, no automatic
    topic creation (as in production: the ledger creates its own topics)."""
    factor = replication_factor(len(cluster))
    min_isr = 2 if factor >= 3 else 1
    ports = {"PLAINTEXT": node.port, **node.extra_ports}
    advertised = ",".join(f"{name}://{HOST}:{port}" for name, port in ports.items())
    protocols = {"PLAINTEXT": "PLAINTEXT", "CONTROLLER": "PLAINTEXT", **listeners}
    voters = ",".join(f"{n.index}@{HOST}:{n.controller_port}" for n in cluster)
    return {
        "process.roles": "broker,controller",
        "node.id": str(node.index),
        "controller.quorum.voters": voters,
        "listeners": f"{advertised},CONTROLLER://{HOST}:{node.controller_port}",
        "advertised.listeners": advertised,
        "listener.security.protocol.map": ",".join(f"{k}:{v}" for k, v in protocols.items()),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(node.home / "data"),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": str(factor),
        "offsets.topic.replication.factor": str(factor),
        # Fewer partitions than the default 50: the first consumer group is served sooner.
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": str(factor),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": str(factor),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
    }


def format_storage(nodes: Sequence[Node], jvm: Jvm, extra_args: Sequence[str] = ()) -> None:
    """Formats the storage of ``nodes`` that have none yet, all with one new cluster id."""
    todo = [node for node in nodes if not node.formatted]
    if not todo:
        return
    cluster_id = new_cluster_id()
    procs = [
        subprocess.Popen(
            [
                *jvm.command(node, "kafka.tools.StorageTool"),
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(node.properties_file),
                "--ignore-formatted",
                *extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=dies_with_this_process(),  # prctl, getppid: safe in the forked child
        )
        for node in todo
    ]
    for node, proc in zip(todo, procs, strict=True):
        try:
            out, _ = proc.communicate(timeout=_FORMAT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if proc.returncode != 0:
            tail = "\n".join(out.decode(errors="replace").splitlines()[-_LOG_TAIL_LINES:])
            raise NodeError(
                f"formatting node {node.index}'s storage failed (exit {proc.returncode}):\n{tail}"
            )


def new_cluster_id() -> str:
    """A random cluster id as Kafka writes them (URL-safe base64 of 16 bytes, no padding);
    never one starting with ``-``, which the command line would read as an option."""
    while True:
        encoded = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not encoded.startswith("-"):
            return encoded


def find_java() -> str | None:
    """``$JAVA_HOME/bin/java`` if it exists, else ``java`` on PATH, else None."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"
