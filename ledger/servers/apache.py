"""Apache Kafka, the engine production runs, as a cluster of child processes on loopback ports.

:class:`ApacheKafka` starts 1 to N nodes in KRaft mode, each a combined broker and controller
(``kafka.Kafka`` from the jars :mod:`ledger.servers.apache_jars` fetches), for the tests, for
``ledger dev --kafka apache`` and for anyone who runs ``python -m ledger.servers.apache``. It
also stops, kills, freezes and restarts single nodes, so tests can show how the ledger lives
through broker loss, and it takes extra listeners and broker properties, so TLS and SASL can
be configured on top of it.

Rules this module keeps:

- **Every node is a child that dies with its parent** (:mod:`ledger.servers.apache_node`).
- **``start()`` and ``restart()`` return only once the nodes serve**: each is registered and
  unfenced in the cluster metadata a client fetches from it; otherwise they raise
  :class:`ApacheKafkaError` with the tail of the nodes' logs.
- **Storage is formatted once** with a random cluster id; a data directory that is already
  formatted is started as it is, so stop and start keep every record.
- **A cluster started without a data directory leaves nothing behind**: its temporary
  directory is removed by ``stop()``, which is idempotent and also runs at interpreter exit.
- **Quiet**: each node logs WARN and above to ``node-<i>/server.log``, never to the terminal.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import kafka.errors as kafka_errors

from ledger.kafka.admin import BrokerUnavailable, admin_client
from ledger.servers.apache_jars import KafkaJarsUnavailable, kafka_libs
from ledger.servers.apache_node import (
    DEFAULT_JVM_OPTIONS,
    HOST,
    Jvm,
    Node,
    NodeError,
    broker_config,
    find_java,
    format_storage,
)
from ledger.servers.embedded import EmbeddedPackageMissing, EmbeddedServerError, free_port

START_TIMEOUT_S = 90.0
_ASK_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0


class ApacheKafkaError(EmbeddedServerError):
    """A node could not be started, reached or stopped; the message says why."""


class ApacheKafkaMissing(EmbeddedPackageMissing):
    """Java or the broker's jars are not to be had here; the message says what is missing."""


class ApacheKafka:
    """A KRaft cluster of ``nodes`` Apache Kafka nodes on loopback, node ids 0 .. nodes-1.

    Each node listens on a PLAINTEXT port (clients, and the brokers among themselves), a
    controller port, and one port per entry of ``listeners`` (listener name to security
    protocol, e.g. ``{"SECURE": "SASL_SSL"}``), all advertised as ``127.0.0.1``. What such a
    listener needs (keystores, JAAS, mechanisms) goes in ``properties``, which are written
    last and so override every default of :func:`~ledger.servers.apache_node.broker_config`;
    ``format_args`` are added to the storage format command (e.g. ``--add-scram ...``).
    ``port`` fixes node 0's PLAINTEXT port (node i gets ``port + i``); other ports are free
    ones the system picks.
    """

    def __init__(
        self,
        nodes: int = 1,
        *,
        data_dir: Path | None = None,
        port: int | None = None,
        properties: Mapping[str, str] | None = None,
        listeners: Mapping[str, str] | None = None,
        format_args: Sequence[str] = (),
        jvm_options: Sequence[str] = DEFAULT_JVM_OPTIONS,
        log_level: str = "WARN",
    ) -> None:
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, got {nodes}")
        self.size = nodes
        self._data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._first_port = port
        self._properties = dict(properties or {})
        self._listeners = {name.upper(): proto for name, proto in (listeners or {}).items()}
        self._format_args = tuple(format_args)
        self._jvm_options = tuple(jvm_options)
        self._log_level = log_level
        self._home: Path | None = None
        self._jvm: Jvm | None = None
        self._nodes: list[Node] = []

    # -- the whole cluster -----------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``host:port,...`` of every node's PLAINTEXT listener."""
        return self.listener_bootstrap("PLAINTEXT")

    def listener_bootstrap(self, listener: str) -> str:
        """``host:port,...`` of every node's port for ``listener`` (PLAINTEXT or an extra one)."""
        nodes = self._running_cluster()
        return ",".join(f"{HOST}:{node.port_of(listener)}" for node in nodes)

    @property
    def home(self) -> Path:
        """The directory that holds ``node-<i>/`` for each node (configuration, data, logs)."""
        if self._home is None:
            raise ApacheKafkaError("Apache Kafka is not running")
        return self._home

    def start(self) -> str:
        """Formats storage where need be, starts every node, waits until all of them serve;
        returns :attr:`bootstrap`. Raises :class:`ApacheKafkaMissing` without Java or jars."""
        if self._nodes:
            return self.bootstrap
        self._jvm = _jvm(self._jvm_options)
        self._home = self._data_dir or Path(tempfile.mkdtemp(prefix="apache-kafka-"))
        atexit.register(self.stop)
        try:
            self._nodes = self._layout(self._home)
            for node in self._nodes:
                config = {**broker_config(node, self._nodes, self._listeners), **self._properties}
                node.write_config(config, self._log_level)
            format_storage(self._nodes, self._jvm, self._format_args)
            for node in self._nodes:
                node.spawn(self._jvm)
            self._wait_until_serving(self._nodes)
        except NodeError as exc:
            self.stop()
            raise ApacheKafkaError(str(exc)) from exc
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def stop(self) -> None:
        """Stops every node (SIGTERM, SIGKILL after a grace period); no-op if not running."""
        atexit.unregister(self.stop)
        nodes, self._nodes = self._nodes, []
        for node in nodes:
            node.send(signal.SIGCONT)  # a frozen JVM cannot act on SIGTERM
            node.send(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for node in nodes:
            node.reap(deadline)
        if self._data_dir is None and self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
        self._home = None

    def brokers(self) -> set[int]:
        """The node ids the cluster metadata lists as live (registered, unfenced) brokers."""
        return _unfenced(self._ask(lambda admin: admin.describe_cluster()["brokers"]))

    def leader(self, topic: str, partition: int = 0) -> int | None:
        """The node id that leads ``topic``'s ``partition`` now, or None while none does."""
        described = self._ask(lambda admin: admin.describe_topics([topic]))
        for found in described:
            for part in found.get("partitions", []):
                if part["partition_index"] == partition:
                    leader = int(part["leader_id"])
                    return leader if leader >= 0 else None
        raise ApacheKafkaError(f"topic {topic!r} has no partition {partition}")

    # -- single nodes ----------------------------------------------------------------------

    def node_bootstrap(self, node: int, listener: str = "PLAINTEXT") -> str:
        return f"{HOST}:{self._node(node).port_of(listener)}"

    def pid(self, node: int) -> int:
        """The node's process id (also its process group id)."""
        proc = self._node(node).proc
        if proc is None or proc.poll() is not None:
            raise ApacheKafkaError(f"node {node} is not running")
        return proc.pid

    def running(self, node: int) -> bool:
        return self._node(node).running

    def kill(self, node: int) -> None:
        """SIGKILLs the node: a crash, without controlled shutdown. Returns once it is dead."""
        target = self._node(node)
        target.send(signal.SIGKILL)
        target.reap(time.monotonic() + STOP_GRACE_S)

    def stop_node(self, node: int) -> None:
        """Stops the node cleanly (SIGTERM: a controlled shutdown hands its leaderships on)."""
        target = self._node(node)
        target.send(signal.SIGCONT)
        target.send(signal.SIGTERM)
        target.reap(time.monotonic() + STOP_GRACE_S)

    def pause(self, node: int) -> None:
        """Freezes the node (SIGSTOP): its sockets stay open but it answers nothing."""
        if not self._node(node).send(signal.SIGSTOP):
            raise ApacheKafkaError(f"node {node} is not running")

    def resume(self, node: int) -> None:
        """Thaws a node frozen by :meth:`pause` (SIGCONT)."""
        self._node(node).send(signal.SIGCONT)

    def restart(self, node: int) -> None:
        """Stops the node if it runs, starts it on the same ports and storage, and returns once
        it serves again."""
        target = self._node(node)
        if target.running:
            self.stop_node(node)
        assert self._jvm is not None
        try:
            target.spawn(self._jvm)
        except NodeError as exc:
            raise ApacheKafkaError(str(exc)) from exc
        self._wait_until_serving([target])

    def heal(self) -> None:
        """Thaws frozen nodes and restarts stopped or killed ones; returns once every node
        serves again (e.g. after a test that took nodes down)."""
        for node in self._running_cluster():
            node.send(signal.SIGCONT)
            if not node.running:
                self.restart(node.index)
        self._wait_until_serving(self._nodes)

    # -- internals -------------------------------------------------------------------------

    def _running_cluster(self) -> list[Node]:
        if not self._nodes:
            raise ApacheKafkaError("Apache Kafka is not running")
        return self._nodes

    def _node(self, index: int) -> Node:
        nodes = self._running_cluster()
        if not 0 <= index < len(nodes):
            raise ValueError(f"no node {index}: the cluster has nodes 0..{len(nodes) - 1}")
        return nodes[index]

    def _ask(self, question: Callable[[Any], list[Any]]) -> list[Any]:
        """``question(admin)`` answered by a running node that is not frozen. A client routes a
        request to any node the metadata lists, also to one that just died or froze (listed
        until the controller fences it; kafka-python gives a connection 10 s to set up), so
        failures are retried for up to a minute."""
        deadline = time.monotonic() + _ASK_TIMEOUT_S
        failure: Exception | None = None
        while time.monotonic() < deadline:
            for node in self._running_cluster():
                if not node.running or node.frozen:
                    continue
                try:
                    with admin_client(f"{HOST}:{node.port}", timeout_s=2.0) as admin:
                        return question(admin)
                except (BrokerUnavailable, kafka_errors.KafkaError, OSError) as exc:
                    failure = exc
            time.sleep(0.2)
        raise ApacheKafkaError(f"no Apache Kafka node answered in time: {failure}")

    def _layout(self, home: Path) -> list[Node]:
        first = self._first_port
        return [
            Node(
                index=i,
                home=home / f"node-{i}",
                port=first + i if first is not None else free_port(HOST),
                controller_port=free_port(HOST),
                extra_ports={name: free_port(HOST) for name in self._listeners},
            )
            for i in range(self.size)
        ]

    def _wait_until_serving(self, nodes: Sequence[Node]) -> None:
        wanted = {node.index for node in nodes}
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            for node in nodes:
                code = node.exit_code()
                if code is not None:
                    raise ApacheKafkaError(
                        f"Apache Kafka node {node.index} exited with code {code} before "
                        f"serving; log tails:\n{node.log_tails()}"
                    )
            if wanted <= _listed_by_all(nodes):
                return
            if time.monotonic() >= deadline:
                tails = "\n".join(node.log_tails() for node in nodes)
                raise ApacheKafkaError(
                    f"Apache Kafka nodes {sorted(wanted)} did not serve within "
                    f"{START_TIMEOUT_S:.0f} s; log tails:\n{tails}"
                )
            time.sleep(0.2)

    def __enter__(self) -> ApacheKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _listed_by_all(nodes: Sequence[Node]) -> set[int]:
    """The brokers every node in ``nodes`` lists in its own metadata (empty if one does not
    answer yet)."""
    listed: set[int] | None = None
    for node in nodes:
        try:
            with admin_client(f"{HOST}:{node.port}", timeout_s=2.0) as admin:
                found = _unfenced(admin.describe_cluster()["brokers"])
        except (BrokerUnavailable, kafka_errors.KafkaError, OSError):
            return set()
        listed = found if listed is None else listed & found
    return listed or set()


def _unfenced(brokers: list[Any]) -> set[int]:
    """Ids of the brokers a DescribeCluster answer lists as not fenced (Kafka 4 lists fenced
    brokers too, with ``is_fenced``)."""
    return {int(b["broker_id"]) for b in brokers if not b.get("is_fenced", False)}


def _jvm(options: Sequence[str]) -> Jvm:
    java = find_java()
    if java is None:
        raise ApacheKafkaMissing("Apache Kafka needs Java 17 or later: no java on PATH")
    try:
        libs = kafka_libs()
    except KafkaJarsUnavailable as exc:
        raise ApacheKafkaMissing(str(exc)) from exc
    return Jvm(java=java, libs=libs, options=tuple(options))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m ledger.servers.apache``: runs a cluster until Ctrl-C, for people to try."""
    parser = argparse.ArgumentParser(
        prog="python -m ledger.servers.apache",
        description="Run Apache Kafka (KRaft) on loopback until Ctrl-C.",
    )
    parser.add_argument("--nodes", type=int, default=1, help="nodes (1 or 3; default 1)")
    parser.add_argument("--port", type=int, default=None, help="node 0's port (default: free)")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep data here")
    args = parser.parse_args(argv)
    cluster = ApacheKafka(args.nodes, data_dir=args.data_dir, port=args.port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with cluster:
        print(f"Apache Kafka serving: LEDGER_KAFKA_BOOTSTRAP={cluster.bootstrap}", flush=True)
        print(f"logs and data under {cluster.home}; Ctrl-C stops it", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
