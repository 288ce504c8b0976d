"""The browser interfaces, added to the query API's app: the privacy center under
``/privacy/``, the console under ``/console/``, their stylesheet under ``/static/web/``, and
``POST /v1/privacy-center/links`` for tenants' backends.

They are part of ``ledger serve`` (so of ``ledger dev``) and read the same database through
the same pool; see ``projections.web.sessions`` for what they store and
``projections.web.security`` for the headers and checks on every page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment
from psycopg_pool import AsyncConnectionPool

from ledger.keys.crypto import KeyEncryptionKey
from ledger.process.settings import Settings
from projections.web import console, links, privacy, render
from projections.web.security import SecurityHeaders, SignInLimit
from projections.web.sessions import Sessions, create_tables


@dataclass(frozen=True)
class Web:
    sessions: Sessions
    signin: SignInLimit
    templates: Environment
    # The privacy center may be framed by a tenant's pages: its cookie is then partitioned.
    embeddable: bool = False


def prepare(settings: Settings) -> None:
    with psycopg.connect(settings.require_database(), autocommit=True) as conn:
        create_tables(conn, settings.database_schema)


def install(
    app: FastAPI, settings: Settings, pool: AsyncConnectionPool[Any], kek: KeyEncryptionKey
) -> None:
    """Call after ``problems.install``: problems on the pages' paths become pages."""
    app.state.web = Web(
        sessions=Sessions(
            pool,
            settings.database_schema,
            kek,
            idle=settings.web_session_idle,
            lifetime=settings.web_session_max,
            link_ttl=settings.privacy_link_ttl,
        ),
        signin=SignInLimit(settings.signin_limit),
        templates=render.environment(),
        embeddable=bool(settings.privacy_frame_ancestors),
    )
    app.add_middleware(SecurityHeaders, privacy_frame_ancestors=settings.privacy_frame_ancestors)
    app.mount(
        "/static/web", StaticFiles(packages=[("projections.web", "static")]), name="web-static"
    )
    app.include_router(links.router)
    app.include_router(privacy.router)
    app.include_router(console.router)
    render.install(app)
