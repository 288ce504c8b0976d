"""The console's dashboard, request register and erasures: figures and lists for privacy staff.

Rules this module keeps:

* **Every figure comes from an API route's answer** (``statistics``, ``register``,
  ``erasures``), called with the session's key (``projections.web.calls``): the page shows
  what that key reads from the API, drawn as charts and written out in tables.
* **Nothing personal.** The routes called answer without personal values for any scope;
  subject ids are shown as they are (they are not personal data) and link nowhere.
* **Overdue first.** The register lists open requests by due date, so overdue ones lead and
  are flagged in words, not by colour alone; ``?state=overdue`` lists only them.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from projections.api import erasures as erasure_routes
from projections.api import register as register_routes
from projections.api import statistics
from projections.api.models import RegisterKind
from projections.api.problems import BadRequest
from projections.web import auth, charts, i18n
from projections.web.calls import call
from projections.web.render import console_page

router = APIRouter(prefix="/console", include_in_schema=False)
KINDS: tuple[str, ...] = get_args(RegisterKind)
STATES = get_args(register_routes.State)
Days = Annotated[int, Query(ge=1, le=730)]


@router.get("/dashboard")
async def dashboard(request: Request, acting: auth.Console, days: Days = 90) -> Response:
    consents = await call(statistics.consents, acting.ctx, acting.who, days=days)
    disclosed = await call(statistics.disclosures, acting.ctx, acting.who, days=days)
    views = await call(statistics.projections, acting.ctx, acting.who)
    t = i18n.Translator(acting.session.language)  # ``?lang=`` is already the session's
    return console_page(
        request,
        acting,
        "console/dashboard.html",
        days=days,
        consents=consents,
        disclosed=disclosed,
        views=views,
        charts={
            **consent_charts(t, consents),
            **disclosure_charts(t, disclosed),
        },
    )


def consent_charts(t: i18n.Translator, stats: statistics.ConsentStatistics) -> dict[str, Any]:
    """The standing consents of every purpose in one chart, and per purpose its grants and
    withdrawals per day."""
    labels = [d.isoformat() for d in _days(stats)]
    empty = t("dash.no_data")
    standing = charts.line_chart(
        "chart-standing",
        t("dash.standing_title"),
        t("dash.standing_desc", since=stats.since, until=stats.until),
        labels,
        [charts.Series(p.purpose, [d.standing for d in p.days]) for p in stats.purposes],
        empty=empty,
    )
    changes = {
        p.purpose: charts.line_chart(
            f"chart-changes-{i}",
            t("dash.changes_title", purpose=p.purpose),
            t("dash.changes_desc", purpose=p.purpose, since=stats.since, until=stats.until),
            labels,
            [
                charts.Series(t("dash.given"), [d.granted for d in p.days]),
                charts.Series(t("dash.withdrawn"), [d.withdrawn for d in p.days]),
            ],
            empty=empty,
        )
        for i, p in enumerate(stats.purposes)
    }
    return {"standing": standing, "changes": changes}


def _days(stats: statistics.ConsentStatistics) -> list[Any]:
    return [d.day for d in stats.purposes[0].days] if stats.purposes else []


def disclosure_charts(t: i18n.Translator, stats: statistics.DisclosureStatistics) -> dict[str, Any]:
    empty = t("dash.no_disclosures")
    window = {"since": stats.since.date(), "until": stats.until.date()}
    return {
        "recipients": charts.bar_chart(
            "chart-recipients",
            t("dash.by_recipient"),
            t("dash.by_recipient_desc", **window),
            [(c.name, c.count) for c in stats.by_recipient],
            empty=empty,
        ),
        "categories": charts.bar_chart(
            "chart-categories",
            t("dash.by_category"),
            t("dash.by_category_desc", **window),
            [(c.name, c.count) for c in stats.by_category],
            empty=empty,
        ),
    }


@router.get("/requests")
async def requests(
    request: Request,
    acting: auth.Console,
    state: register_routes.State = "open",
    kind: str = "",
) -> Response:
    if kind and kind not in KINDS:
        raise BadRequest("no such kind of request")
    answer = await call(
        register_routes.register, acting.ctx, acting.who, state=state, kind=kind or None
    )
    overdue = sum(1 for r in answer.requests if r.overdue)
    return console_page(
        request,
        acting,
        "console/requests.html",
        state=state,
        kind=kind,
        states=STATES,
        kinds=KINDS,
        entries=answer.requests,
        overdue=overdue,
    )


@router.get("/erasures")
async def erasures(request: Request, acting: auth.Console) -> Response:
    answer = await call(erasure_routes.erasures, acting.ctx, acting.who, limit=200)
    return console_page(
        request,
        acting,
        "console/erasures.html",
        entries=answer.erasures,
        limit=200,
    )
