"""The ledger's PostgreSQL sessions: their name and their server-side bounds.

Rules this module keeps:

- **Named.** Every connection of the ledger's recorder says which process it serves
  (``application_name`` ``ledger <command>``, e.g. ``ledger ingest``), so ``pg_stat_activity``
  tells who holds what.
- **Bounded by the server** (``LEDGER_STATEMENT_TIMEOUT``, ``LEDGER_LOCK_TIMEOUT``,
  ``LEDGER_IDLE_TRANSACTION_TIMEOUT``, and on PostgreSQL 17 and later ``transaction_timeout``
  at twice ``LEDGER_WRITE_TIMEOUT``, after the watchdog): set as connection options, so they
  hold from the first statement of every pooled and direct connection, and even while the
  ledger's process is frozen. A server before 17 lacks ``transaction_timeout``; the
  in-process watchdog (``ledger.storage.write_watch``) bounds write transactions there.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TRANSACTION_TIMEOUT_SINCE = 170_000  # PostgreSQL 17
# Keys of the `eventsourcing` environment that carry the bounds to the recorder.
STATEMENT_TIMEOUT_MS = "LEDGER_PG_STATEMENT_TIMEOUT_MS"
WRITE_TIMEOUT_MS = "LEDGER_PG_WRITE_TIMEOUT_MS"
_SECONDS = {  # set by `eventsourcing` on its own connections too; here for every connection
    "lock_timeout": "POSTGRES_LOCK_TIMEOUT",
    "idle_in_transaction_session_timeout": "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
}
_MAX_NAME = 63  # PostgreSQL truncates longer application names


def process_name(argv: list[str] | None = None) -> str:
    """``ledger <command>`` for the ``ledger`` console script, else ``ledger``."""
    args = sys.argv if argv is None else argv
    script = Path(args[0]) if args else Path()
    words = [a for a in args[1:] if not a.startswith("-")]
    ours = script.name == "ledger" or script.parts[-3:] == ("ledger", "cli", "main.py")
    if ours and words:
        return f"ledger {words[0]}"[:_MAX_NAME]
    return "ledger"


def options(env: Mapping[str, Any], server_version: int) -> str:
    """The ``options`` connection parameter: each bound as ``-c name=value``."""
    settings = {"statement_timeout": f"{int(env.get(STATEMENT_TIMEOUT_MS) or 0)}ms"}
    for name, key in _SECONDS.items():
        if env.get(key):
            settings[name] = f"{int(env[key])}s"
    write_ms = int(env.get(WRITE_TIMEOUT_MS) or 0)
    if write_ms and server_version >= TRANSACTION_TIMEOUT_SINCE:
        # The backstop for a frozen process, whose own watchdog cannot act: after it.
        settings["transaction_timeout"] = f"{2 * write_ms}ms"
    return " ".join(f"-c {name}={value}" for name, value in settings.items())


def connection_kwargs(env: Mapping[str, Any], server_version: int = 0) -> dict[str, str]:
    """Name and bounds as connection parameters, for a pool of the ledger's own making."""
    return {"application_name": process_name(), "options": options(env, server_version)}


def configure(pool_kwargs: object, env: Mapping[str, Any], server_version: int) -> None:
    """Names and bounds every later connection made with ``pool_kwargs`` (the pool's and
    ``ledger.storage.postgres.connect_direct``'s)."""
    if not isinstance(pool_kwargs, dict):
        raise TypeError(f"connection parameters are a {type(pool_kwargs).__name__}, not a dict")
    pool_kwargs.update(connection_kwargs(env, server_version))
