"""``POST /v1/privacy-center/links``: how a tenant's backend sends a signed-in person to the
privacy center.

The backend has already signed the person in; it asks, with an ``admin`` key, for a link
for that person's subject reference and gets a one-time URL to send the browser to. The
reference travels in the request body only; the link carries a random code (never the
reference), good once and for ``LEDGER_PRIVACY_LINK_TTL`` (default five minutes). The
session it opens acts as that key, narrowed to the one subject: see ``projections.web``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from projections.api.access import Principal, Scope, require
from projections.api.models import SubjectQuery
from projections.api.problems import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES, tags=["privacy center"])
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]


class LinkRequest(SubjectQuery):
    language: Literal["en", "de"] = Field(
        default="en", description="The language the privacy center opens in."
    )


class PrivacyLink(BaseModel):
    url: str = Field(
        description="Where to send the person's browser: this server's /privacy/enter with a "
        "one-time code. Absolute, from the request's own scheme and host."
    )
    path: str = Field(description="The same, relative to this server.")
    expires_at: datetime = Field(description="The code opens nothing after this instant.")


@router.post("/privacy-center/links", status_code=201)
async def create_link(body: LinkRequest, request: Request, who: Admin) -> PrivacyLink:
    """A one-time link to the privacy center for one subject of the key's tenant. Send the
    person there at once (a redirect from your signed-in page): the code is good once, for
    a few minutes. The person need not have any event recorded yet."""
    sessions = request.app.state.web.sessions
    link = await sessions.create_link(who.tenant, who.key_id, body.subject_ref, body.language)
    path = f"/privacy/enter?code={link.code}"
    return PrivacyLink(
        url=str(request.base_url).rstrip("/") + path, path=path, expires_at=link.expires_at
    )
