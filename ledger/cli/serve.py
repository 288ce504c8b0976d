"""``ledger serve``: the HTTP query API (OpenAPI document at ``/docs`` and ``/openapi.json``)."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from ledger.cli.common import DATABASE_DOWN, fail, settings
from ledger.cli.keys import before_serving
from ledger.settings import ConfigError


def serve(
    host: Annotated[str | None, typer.Option(help="Default: LEDGER_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: LEDGER_API_PORT.")] = None,
) -> None:
    """Serve the query API over the projections. Stops cleanly on Ctrl-C."""
    from projections.api.app import create_app, prepare

    s = settings()
    before_serving(s)  # erasures a restored database lacks, before the first request
    try:
        prepare(s)
        app = create_app(s)
    except ConfigError as exc:
        fail(str(exc))
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")
    uvicorn.run(
        app,
        host=host or s.api_host,
        port=port or s.api_port,
        log_level="warning",  # access lines are left out: request logs come from structlog
        access_log=False,
    )


def register(app: typer.Typer) -> None:
    app.command()(serve)
