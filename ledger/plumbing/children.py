"""Child processes of ``ledger dev`` and the benchmarks: ``ledger <command>`` with an environment.

On Linux a child is sent SIGTERM when the process that started it dies, even by SIGKILL
(``PR_SET_PDEATHSIG``), so no ledger process outlives the command that started it. Stopping is
SIGTERM first — each process finishes the batch in hand — then SIGKILL after a grace period.
:class:`ChildLogs` copies each child's output to the parent's stderr and to a bounded file.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import IO, BinaryIO

PR_SET_PDEATHSIG = 1
LOG_FILE_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 3  # at most 4 files of LOG_FILE_BYTES per process
_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


ORPHANED = 70  # the exit status of a child that found its parent gone before it ran


def die_with_parent(parent: int | None = None) -> None:
    """Run in a forked child before exec: SIGTERM it when its parent dies (Linux). Given the
    ``parent``'s pid (taken before the fork), a child whose parent died between the fork and
    this call — the kernel sends no signal for a death before ``prctl`` — exits at once with
    :data:`ORPHANED` instead of running on as an orphan."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent is not None and os.getppid() != parent:
        os._exit(ORPHANED)  # not a signal: a handler inherited from the parent would catch it


def dies_with_this_process() -> Callable[[], None]:
    """A ``preexec_fn`` for :func:`die_with_parent` with this process as the parent."""
    return functools.partial(die_with_parent, os.getpid())


def spawn(
    command: str,
    env: Mapping[str, str],
    *,
    output: IO[bytes] | int | None = None,
    args: Sequence[str] = (),
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Starts ``ledger COMMAND [ARGS]`` with this interpreter, in its own session (so a Ctrl-C
    in the terminal reaches only the parent, which stops its children in order); ``pass_fds``
    stay open in the child."""
    return subprocess.Popen(
        [sys.executable, "-m", "ledger.cli.main", command, *args],
        env=dict(env),
        pass_fds=tuple(pass_fds),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,
        preexec_fn=dies_with_this_process(),  # prctl and getppid: safe in the forked child
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


class ChildLogs:
    """Spawns children whose output (their log lines) goes, line by line, both to ``echo``
    (the parent's stderr, where they went before) and to ``<directory>/<command>.log``.

    A file is rotated at :data:`LOG_FILE_BYTES`, keeping :data:`LOG_FILE_BACKUPS` older ones
    (``ingest.log.1``...), so each process's logs stay bounded. Terminal colour codes are left
    out of the files. A restarted child appends to the same file.
    """

    def __init__(self, directory: Path, echo: BinaryIO | None = None) -> None:
        self.directory = directory
        self._echo = echo if echo is not None else sys.stderr.buffer
        self._echo_lock = threading.Lock()
        self._files: dict[str, logging.Logger] = {}
        self._files_lock = threading.Lock()
        self._copiers: list[threading.Thread] = []

    def spawn(self, command: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        proc = spawn(command, env, output=subprocess.PIPE)
        assert proc.stdout is not None
        copier = threading.Thread(
            target=self._copy, args=(command, proc.stdout), name=f"log-{command}", daemon=True
        )
        copier.start()
        self._copiers.append(copier)
        return proc

    def close(self, timeout_s: float = 5.0) -> None:
        """Waits for the copies of stopped children to end, then closes the files."""
        for copier in self._copiers:
            copier.join(timeout=timeout_s)
        for file in self._files.values():
            for handler in file.handlers:
                handler.close()
                file.removeHandler(handler)
        self._files.clear()

    def _copy(self, command: str, stream: IO[bytes]) -> None:
        file = self._file(command)
        with stream:
            for line in iter(stream.readline, b""):
                with self._echo_lock:
                    self._echo.write(line)
                    self._echo.flush()
                text = line.decode("utf-8", "replace").rstrip("\n")
                file.info(_COLOURS.sub("", text))

    def _file(self, command: str) -> logging.Logger:
        with self._files_lock:
            return self._files.get(command) or self._open(command)

    def _open(self, command: str) -> logging.Logger:
        self.directory.mkdir(parents=True, exist_ok=True)
        file = logging.getLogger(f"ledger.children.{self.directory}.{command}")
        file.propagate = False
        file.setLevel(logging.INFO)
        handler = RotatingFileHandler(
            self.directory / f"{command}.log",
            maxBytes=LOG_FILE_BYTES,
            backupCount=LOG_FILE_BACKUPS,
            encoding="utf-8",
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        file.addHandler(handler)
        self._files[command] = file
        return file
