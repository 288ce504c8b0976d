"""The Apache Kafka broker's jars: fetched once from Maven Central, then reused.

``apache-kafka.pom.xml`` beside this module names ``org.apache.kafka:kafka_2.13`` and the log
binding; ``mvn dependency:copy-dependencies`` copies it and its runtime dependencies into
``<cache>/kafka-<version>/libs``, where ``<cache>`` is ``$LEDGER_APACHE_KAFKA_CACHE``, else
``$XDG_CACHE_HOME/compliance-ledger``, else ``~/.cache/compliance-ledger``.
``$LEDGER_APACHE_KAFKA_LIBS`` names a directory of jars to use instead (e.g. the ``libs/`` of
an unpacked Kafka distribution); nothing is fetched then.

Rules this module keeps:

- **Fetched once, outside the work tree.** A complete ``libs`` directory is reused as it is;
  Maven runs only when it is missing.
- **Never half a directory.** Maven copies into a temporary sibling that is renamed to
  ``libs`` only when Maven succeeded, so an interrupted fetch leaves nothing that looks whole.
- **One fetch at a time.** An exclusive file lock (``kafka-<version>.lock``) is held while
  checking and fetching, so test processes that ask at once fetch once and all wait for it.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

POM = Path(__file__).with_name("apache-kafka.pom.xml")
_FETCH_TIMEOUT_S = 900.0
_BROKER_JAR = re.compile(r"^kafka_2\.13-[0-9.]+\.jar$")


class KafkaJarsUnavailable(RuntimeError):
    """The broker's jars are not here and could not be fetched; the message says why."""


def kafka_version() -> str:
    """The Apache Kafka version the pom names (``kafka.version``)."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if found is None:  # pragma: no cover - the pom ships with the package
        raise KafkaJarsUnavailable(f"{POM} names no kafka.version")
    return found.group(1).strip()


def cache_root(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("LEDGER_APACHE_KAFKA_CACHE"):
        return Path(env["LEDGER_APACHE_KAFKA_CACHE"]).expanduser()
    xdg = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "compliance-ledger"


def kafka_libs(env: Mapping[str, str] = os.environ) -> Path:
    """A directory holding the broker's jars, fetched with Maven first if need be."""
    configured = env.get("LEDGER_APACHE_KAFKA_LIBS")
    if configured:
        libs = Path(configured).expanduser()
        if not _complete(libs):
            raise KafkaJarsUnavailable(
                f"LEDGER_APACHE_KAFKA_LIBS={libs} holds no kafka_2.13-<version>.jar"
            )
        return libs
    home = cache_root(env) / f"kafka-{kafka_version()}"
    libs = home / "libs"
    if _complete(libs):
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home.with_name(home.name + ".lock")):
        if not _complete(libs):  # another process may have fetched while we waited
            _fetch(libs)
    return libs


def _complete(libs: Path) -> bool:
    return libs.is_dir() and any(_BROKER_JAR.match(p.name) for p in libs.iterdir())


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch(libs: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaJarsUnavailable(
            "Apache Kafka's jars are not cached and Maven (mvn) is not on PATH to fetch them; "
            "install Maven, or set LEDGER_APACHE_KAFKA_LIBS to a Kafka distribution's libs/"
        )
    partial = Path(tempfile.mkdtemp(prefix="libs.partial-", dir=libs.parent))
    pom = libs.parent / "pom.xml"  # a copy: Maven must not write beside the installed package
    shutil.copyfile(POM, pom)
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
    ]
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_FETCH_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0 or not _complete(partial):
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise KafkaJarsUnavailable(
                f"Maven could not fetch Apache Kafka {kafka_version()} (exit {done.returncode}):"
                f"\n{tail}"
            )
        partial.rename(libs)
    except subprocess.TimeoutExpired as exc:
        raise KafkaJarsUnavailable(
            f"Maven did not fetch Apache Kafka within {_FETCH_TIMEOUT_S:.0f} s"
        ) from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
