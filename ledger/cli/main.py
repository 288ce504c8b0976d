"""The ``ledger`` console script: one Typer app, one module per group of commands."""

from __future__ import annotations

import gc

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
    proofs,
    replay,
    report,
    requests,
    rights,
    serve,
    webhooks,
)

# The collector's first generation runs every 50,000 allocations instead of every 700. The
# ledger's processes decode and fold events in batches: each batch's objects outlived a few
# young collections and were then traversed again and again in older ones, a fifth of a
# 100,000-event replay. Garbage without cycles is freed at once whatever the threshold, and
# what has cycles waits for at most one generation's worth of allocations, so memory is
# unchanged (the soak's verdict holds).
GEN0_THRESHOLD = 50_000
gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])

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
    rights,
    requests,
    ingest_keys,
    apikeys,
    bench,
    webhooks,
    audit,
    proofs,
    replay,
    report,
):
    module.register(app)

if __name__ == "__main__":
    app()
