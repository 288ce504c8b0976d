"""The ``ledger`` console script: one Typer app, one module per group of commands."""

from __future__ import annotations

import typer

from ledger.cli import (
    admin,
    apikeys,
    audit,
    bench,
    demo,
    dev,
    erasure,
    ingest_keys,
    inspect,
    keys,
    processes,
    project,
    replay,
    report,
    serve,
    webhooks,
)

app = typer.Typer(
    help="Compliance ledger: records consent, collection, disclosure and erasure facts.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold keys or personal values
)
for module in (
    dev,
    processes,
    project,
    serve,
    demo,
    inspect,
    admin,
    keys,
    erasure,
    ingest_keys,
    apikeys,
    bench,
    webhooks,
    audit,
    replay,
    report,
):
    module.register(app)

if __name__ == "__main__":
    app()
