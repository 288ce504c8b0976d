"""Starting and running a replay: its row, its build, its outcome. The CLI and the API both
come through here, so a replay started from either is listed, queried and dropped the same way.

A build that fails or is interrupted leaves its row ``failed`` with the reason and drops its
schemas; nothing of it is ever read as an answer.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from ledger.application.service import LedgerReader
from ledger.plumbing.logs import get as get_logger
from ledger.process.settings import Settings
from projections.queries import Queries
from projections.replay.build import Built, Progress, build
from projections.replay.registry import ReplayRow, Replays, view_schemas

log = get_logger("replay")


class UnanswerableInstant(ValueError):
    """An instant no replay can be built for; the message says why."""


class FutureInstant(UnanswerableInstant):
    pass


def start(replays: Replays, as_of: datetime, requested_by: str) -> ReplayRow:
    """Records a queued replay as of ``as_of`` (an aware instant, not in the future), after
    sweeping expired ones."""
    if as_of.tzinfo is None:
        raise ValueError("the instant needs a time zone (e.g. 2026-03-01T00:00:00Z)")
    try:
        as_of = as_of.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00, which is in year 0 in UTC
        raise UnanswerableInstant("the instant is before the year 1 in UTC") from None
    if as_of > datetime.now(UTC):
        raise FutureInstant("the instant is in the future; the ledger cannot answer for it yet")
    for dropped in replays.sweep():
        log.info("replay_expired", replay_id=dropped)
    return replays.add(as_of, requested_by)


def run(
    settings: Settings,
    reader: LedgerReader,
    replays: Replays,
    row: ReplayRow,
    *,
    on_progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> Built:
    """Builds the replay recorded in ``row`` and records its outcome. Re-raises a failure after
    recording it (the row says ``failed``, the schemas are dropped)."""
    replay_id = row.replay_id

    def progress(position: int, head: int, applied: int) -> None:
        replays.progress(replay_id, head=head, position=position, applied=applied)
        if on_progress is not None:
            on_progress(position, head, applied)

    log.info("replay_started", replay_id=replay_id, as_of=row.as_of.isoformat())
    try:
        replays.progress(replay_id, head=0, position=0, applied=0)  # building; still wanted?
        built = build(settings, reader, replay_id, row.as_of, on_progress=progress, stop=stop)
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log.warning("replay_failed", replay_id=replay_id, error=type(exc).__name__)
        replays.drop_schemas(replay_id)
        replays.fail(replay_id, reason)
        raise
    replays.finish(
        replay_id,
        cut=built.cut,
        applied=built.applied,
        verification=built.verification(),
        seconds=built.audit.seconds,
    )
    log.info(
        "replay_ready",
        replay_id=replay_id,
        head=built.head,
        cut=built.cut,
        applied=built.applied,
        verified=built.audit.ok,
        seconds=round(built.audit.seconds, 3),
    )
    return built


def queries(settings: Settings, row: ReplayRow) -> Queries:
    """The read queries over a ready replay, with its instant as now."""
    return Queries(settings, schemas=view_schemas(settings, row.replay_id), as_of=row.as_of)
