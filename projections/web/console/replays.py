"""The auditor's replay pages: the views as they stood at an instant, asked like the live ones.

Rules this module keeps:

* **The API's replay routes do the work** (``projections.api.replays``): starting one,
  following its build, its answers for one subject and its purpose check, dropping it; the
  pages add no state and read no table.
* **The instant is UTC**: the form's ``datetime-local`` value has no time zone, and the page
  says it is read as UTC.
* **A building replay's page refreshes itself** (``<meta http-equiv="refresh">``, no
  script) until its state is no longer ``queued`` or ``building``.
* **Subject ids and purpose codes may travel in the browse form's URL** (they are not
  personal); the answers show personal values exactly as the key's scope reads them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from projections.api import replays
from projections.api.problems import BadRequest, Conflict, NotFound
from projections.web import auth
from projections.web.auth import Acting, posted
from projections.web.calls import allowed, call
from projections.web.render import console_page as show

router = APIRouter(prefix="/console", include_in_schema=False)
RUNNING = ("queued", "building")


@router.get("/replays")
async def replay_list(request: Request, acting: auth.Console) -> Response:
    return await _list(request, acting, dropped=request.query_params.get("dropped") == "1")


async def _list(
    request: Request,
    acting: Acting,
    *,
    error: str | None = None,
    status: int = 200,
    dropped: bool = False,
    as_of: str = "",
) -> Response:
    if not allowed(replays.list_replays, acting.who):
        return show(request, acting, "console/replays.html", status=403, denied=True)
    found = await call(replays.list_replays, acting.ctx, acting.who)
    return show(
        request,
        acting,
        "console/replays.html",
        status=status,
        denied=False,
        replays=found,
        error=error,
        dropped=dropped,
        as_of=as_of,
    )


def instant(text: str) -> datetime | None:
    """A ``datetime-local`` value (seconds optional) read as UTC; None if it is none."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


@router.post("/replays")
async def start(request: Request, acting: auth.Console) -> Response:
    form = await posted(request, acting)
    text = form.get("as_of", "")
    at = instant(text)
    if at is None:
        return await _list(request, acting, error="audit.replay_bad_instant", status=422)
    if not allowed(replays.start_replay, acting.who):
        return await _list(request, acting)
    try:
        started = await call(
            replays.start_replay,
            acting.ctx,
            acting.who,
            body=replays.ReplayRequest(as_of=at),
            request=request,
            response=Response(),
        )
    except BadRequest as exc:
        return await _list(request, acting, error=exc.detail, status=400, as_of=text)
    return RedirectResponse(f"/console/replays/{started.replay_id}", status_code=303)


@router.get("/replays/{replay_id}")
async def replay_page(
    replay_id: str,
    request: Request,
    acting: auth.Console,
    subject_id: str = "",
    purpose: str = "",
) -> Response:
    if not allowed(replays.get_replay, acting.who):
        return show(request, acting, "console/replay.html", status=403, denied=True)
    replay = await call(replays.get_replay, acting.ctx, acting.who, replay_id=replay_id)
    values: dict[str, Any] = {"answers": None, "check": None, "notice": None}
    if replay.status == "ready" and subject_id.strip():
        values = await _answers(acting, replay_id, subject_id.strip(), purpose.strip())
    return show(
        request,
        acting,
        "console/replay.html",
        denied=False,
        replay=replay,
        running=replay.status in RUNNING,
        subject_id=subject_id.strip(),
        purpose=purpose.strip(),
        **values,
    )


async def _answers(acting: Acting, replay_id: str, subject: str, purpose: str) -> dict[str, Any]:
    """The subject's answers as of the replay's instant, and the purpose check if asked."""
    out: dict[str, Any] = {"answers": None, "check": None, "notice": None}
    try:
        subject_id = UUID(subject)
    except ValueError:
        return {**out, "notice": "audit.replay_bad_subject"}
    ctx, who = acting.ctx, acting.who
    ids = {"replay_id": replay_id, "subject_id": subject_id}
    try:
        out["answers"] = {
            "consents": await call(replays.replay_consents, ctx, who, **ids),
            "disclosures": await call(
                replays.replay_disclosures, ctx, who, **ids, recipient=None, since=None, until=None
            ),
            "collections": await call(replays.replay_collections, ctx, who, **ids),
            "erasure": await call(replays.replay_erasure, ctx, who, **ids),
            "rights": await call(replays.replay_rights, ctx, who, **ids),
        }
    except NotFound:
        out["notice"] = "audit.replay_unknown_subject"
    except Conflict as exc:
        out["notice"] = exc.detail
    if purpose:
        try:
            body = replays.ReplayPurposeCheck(subject_id=subject_id, purpose=purpose)
            out["check"] = await call(
                replays.replay_purpose_check, ctx, who, replay_id=replay_id, body=body
            )
        except ValidationError:
            out["notice"] = "audit.replay_bad_purpose"
        except NotFound:
            out["notice"] = "audit.replay_unknown_subject"
    return out


@router.post("/replays/{replay_id}/drop")
async def drop(replay_id: str, request: Request, acting: auth.Console) -> Response:
    await posted(request, acting)
    await call(replays.drop_replay, acting.ctx, acting.who, replay_id=replay_id)
    return RedirectResponse("/console/replays?dropped=1", status_code=303)
