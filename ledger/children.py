"""Child processes of ``ledger dev`` and the benchmarks: ``ledger <command>`` with an environment.

On Linux a child is sent SIGTERM when the process that started it dies, even by SIGKILL
(``PR_SET_PDEATHSIG``), so no ledger process outlives the command that started it. Stopping is
SIGTERM first — each process finishes the batch in hand — then SIGKILL after a grace period.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from typing import IO

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Run in a forked child before exec: SIGTERM it when its parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    command: str, env: Mapping[str, str], *, output: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """Starts ``ledger COMMAND`` with this interpreter, in its own session (so a Ctrl-C in the
    terminal reaches only the parent, which stops its children in order)."""
    return subprocess.Popen(
        [sys.executable, "-m", "ledger.cli.main", command],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,
        preexec_fn=die_with_parent,  # only a prctl call: safe in the forked child
    )


def stop(children: Iterable[subprocess.Popen[bytes]], grace_s: float = 15.0) -> None:
    procs = list(children)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
