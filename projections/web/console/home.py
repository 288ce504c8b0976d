"""The console's first page: who is signed in, with what scopes, and where to go."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from projections.web import auth
from projections.web.render import console_page

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/")
async def home(request: Request, acting: auth.Console) -> Response:
    return console_page(
        request,
        acting,
        "console/home.html",
        who=acting.who,
    )
