"""The auditor's checkpoint pages: signed checkpoints, newest first, each verifiable.

Rules this module keeps:

* **The API decides and verifies.** The list is ``GET /v1/checkpoints``; a verification is
  ``GET /v1/checkpoints/{sequence}/verification`` (``projections.api.verification``), both
  called through ``calls`` with the session's key: the page holds no crypto of its own.
* **A key without the scope sees why, not a crash**: the page says the key's scope does not
  allow it (403) and shows no checkpoint data.
* **Every post carries the session's CSRF token** (``posted``), also the read-only ones, so
  the console's forms all work one way; the shared helpers here serve the other auditor
  pages (``replays``, ``proofs``) too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from projections.api import checkpoints as checkpoint_routes
from projections.api import verification
from projections.api.checkpoints import Checkpoint
from projections.api.problems import NotFound
from projections.web import auth
from projections.web.auth import Acting, posted
from projections.web.calls import allowed, call
from projections.web.render import console_page as show

router = APIRouter(prefix="/console", include_in_schema=False)
LISTED = 100
SHORT = 12  # characters of a root shown in the table; the whole root is in its title


@router.get("/checkpoints")
async def checkpoint_list(request: Request, acting: auth.Console) -> Response:
    return await _page(request, acting)


@router.post("/checkpoints/{sequence}/verify")
async def verify_checkpoint(sequence: int, request: Request, acting: auth.Console) -> Response:
    await posted(request, acting)
    if not allowed(verification.checkpoint_verification, acting.who):
        return await _page(request, acting)
    try:
        result = await call(
            verification.checkpoint_verification, acting.ctx, acting.who, sequence=sequence
        )
    except NotFound as exc:
        return await _page(request, acting, error=exc.detail, status=404)
    return await _page(request, acting, result=result)


async def _page(
    request: Request,
    acting: Acting,
    *,
    result: verification.CheckpointVerification | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    if not allowed(checkpoint_routes.checkpoints, acting.who):
        return show(request, acting, "console/checkpoints.html", status=403, denied=True, rows=[])
    listed = await call(checkpoint_routes.checkpoints, acting.ctx, acting.who, limit=LISTED)
    return show(
        request,
        acting,
        "console/checkpoints.html",
        status=status,
        denied=False,
        rows=[_row(c, result) for c in listed],
        verification=result,
        error=error,
    )


def _row(c: Checkpoint, result: verification.CheckpointVerification | None) -> dict[str, Any]:
    state = "unchecked"
    if result is not None and result.sequence == c.sequence:
        state = "verified" if result.verified else "failed"
    root = c.root or ""
    return {
        "sequence": c.sequence,
        "signed_at": datetime.fromtimestamp(c.time_us / 1_000_000, UTC),
        "tree_size": c.tree_size,
        "root": root,
        "root_short": root[:SHORT] + ("…" if len(root) > SHORT else ""),
        "key_id": c.key_id,
        "cosignatures": cosignatures(c.note),
        "state": state,
    }


def cosignatures(note: str | None) -> int:
    """Signature lines on the note besides the log's own: the witnesses' cosignatures."""
    if not note:
        return 0
    cut = note.rfind("\n\n")
    lines = [x for x in note[cut + 2 :].splitlines() if x.startswith("\u2014 ")]
    return max(0, len(lines) - 1)
