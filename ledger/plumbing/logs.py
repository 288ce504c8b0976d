"""Structured logging: JSON lines in production, readable lines in a terminal.

Log calls pass key/value pairs (``log.info("batch_recorded", recorded=12)``), never formatted
strings, and never a personal field: event ids, tenants, subject ids, offsets and timings only.
"""

from __future__ import annotations

import sys
from logging import INFO, WARNING
from typing import Any, TextIO, cast

import structlog


def configure(fmt: str = "auto", level: int = INFO) -> None:
    """``fmt`` is ``json``, ``console`` or ``auto`` (console when stderr is a terminal)."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True)
        if use_console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # structlog only calls write() and flush() on it.
        logger_factory=structlog.PrintLoggerFactory(file=cast("TextIO", _CurrentStderr())),
        cache_logger_on_first_use=False,
    )


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at the time of writing (a test runner may swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


__all__ = ["INFO", "WARNING", "configure", "get"]


def get(name: str, **context: Any) -> Any:
    """A lazy logger: it takes the configuration in force when it logs, so a module-level
    logger made at import still honours a later :func:`configure` (a quieter level)."""
    return structlog.get_logger(name, **context)
