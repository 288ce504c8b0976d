"""Children of ``ledger dev`` and the benchmarks die with the process that started them, and
``ledger dev`` keeps each one's log lines in a file as well as showing them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

from ledger.plumbing import children

PARENT = """
import sys, time
from ledger.plumbing import children
child = children.spawn("project", dict(__import__("os").environ))
print(child.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split()[2] if sys.platform == "linux" else ""
    return status != "Z"


def test_a_child_is_stopped_when_its_parent_is_killed(settings_environ: dict[str, str]) -> None:
    env = {**os.environ, **settings_environ}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], env=env, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    time.sleep(1.0)
    assert alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 20
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)


def test_a_child_whose_parent_is_already_gone_ends_before_it_runs() -> None:
    """The kernel sends the parent-death signal only for a death after ``prctl``: a child that
    finds another parent than the one that forked it ends itself."""
    not_my_parent = 1  # the spawning process is never pid 1 here
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        preexec_fn=lambda: children.die_with_parent(not_my_parent),
    )
    try:
        assert child.wait(timeout=10) == children.ORPHANED  # before exec: no sleep ran
    finally:
        child.kill()
        child.wait()


def test_a_childs_log_lines_go_to_the_terminal_and_to_its_file(
    settings_environ: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ, **settings_environ, "LEDGER_LOG_FORMAT": "console"}
    terminal = BytesIO()
    logs = children.ChildLogs(tmp_path / "logs", echo=terminal)
    child = logs.spawn("project", env)
    deadline = time.monotonic() + 30
    while b"\n" not in terminal.getvalue():
        assert time.monotonic() < deadline, "the child logged nothing"
        time.sleep(0.1)
    children.stop([child])
    logs.close()
    shown = terminal.getvalue().decode().splitlines()
    kept = (tmp_path / "logs" / "project.log").read_text().splitlines()
    assert "\x1b[" in "".join(shown)  # the terminal keeps its colours
    assert kept == [children._COLOURS.sub("", line) for line in shown]
    assert "\x1b[" not in "".join(kept)
