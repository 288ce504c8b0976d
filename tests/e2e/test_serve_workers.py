"""``ledger serve --workers N``: N processes on one port, one set of metrics, one stop."""

from __future__ import annotations

import os
import re
import signal
import urllib.request
from pathlib import Path

import pytest

from ledger.servers.embedded import free_port
from tests.e2e.test_processes import Process, env, ledger_command, processes
from tests.kafka_helpers import wait_until

__all__ = ["env", "processes"]  # fixtures

HEALTHZ_COUNT = re.compile(
    r'^ledger_http_request_duration_seconds_count\{method="GET",route="/healthz",'
    r'status="200"\} ([0-9.]+)$',
    re.M,
)


def children_of(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:  # the field after the state is the parent's pid
            found.add(int(stat.parent.name))
    return found


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (http only)
        return str(response.read().decode())


def answers(url: str) -> bool:
    try:
        return fetch(url) is not None
    except OSError:
        return False


def test_workers_share_the_port_sum_their_metrics_and_stop_together(
    env: dict[str, str], processes: list[Process], tmp_path: Path
) -> None:
    port = free_port()
    env = {**env, "LEDGER_API_PORT": str(port)}
    serve = Process([*ledger_command("serve"), "--workers", "3"], env, tmp_path / "serve.log")
    processes.append(serve)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers(f"{base}/healthz"), timeout=60, what="the API to start")
    wait_until(lambda: len(children_of(serve.proc.pid)) == 3, timeout=30, what="3 workers")
    workers = children_of(serve.proc.pid)

    for _ in range(30):  # a connection each: the kernel hands them to the workers
        fetch(f"{base}/healthz")
    # Every worker's page shows the sum: the same count whichever answers the scrape.
    counts = set()
    for _ in range(12):
        found = HEALTHZ_COUNT.search(fetch(f"{base}/metrics"))
        assert found is not None
        counts.add(float(found[1]))
    assert len(counts) == 1 and counts.pop() >= 30  # the startup probes count too

    # A worker that dies is replaced; the others kept serving meanwhile.
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    assert answers(f"{base}/healthz")
    wait_until(
        lambda: len(children_of(serve.proc.pid) - workers) == 1, timeout=30, what="a new worker"
    )
    assert victim not in children_of(serve.proc.pid)

    last = children_of(serve.proc.pid)
    assert serve.stop(timeout=60) == 0  # SIGINT, as Ctrl-C: each worker drains and exits
    assert not any(Path(f"/proc/{pid}").exists() for pid in last)
    with pytest.raises(OSError):  # nothing is left listening
        fetch(f"{base}/healthz")
