"""``ledger erase`` and ``ledger holds`` against a real PostgreSQL."""

from __future__ import annotations

from typer.testing import CliRunner

from ledger.cli.main import app
from ledger.process.runtime import open_ledger
from ledger.process.settings import load
from tests.builders import REF, grant
from tests.ledger_cases import ready


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env, input=stdin)
    return result.exit_code, result.output


def test_erase_is_refused_under_a_hold_then_shreds_after_release(
    settings_environ: dict[str, str],
) -> None:
    ledger = open_ledger(load(settings_environ))
    try:
        ready(ledger)
        ledger.record([grant(REF)])
    finally:
        ledger.close()
    env = settings_environ

    code, out = run(env, "holds", "place", "acme", "-", "case-7", stdin=REF + "\n")
    assert code == 0 and "legal hold case-7 placed" in out
    code, out = run(env, "erase", "acme", "-", stdin=REF + "\n")
    assert code == 3 and "erasure refused (legal_hold: case-7)" in out
    code, out = run(env, "holds", "release", "acme", "-", "case-7", stdin=REF + "\n")
    assert code == 0
    code, out = run(env, "erase", "acme", "-", "--event-id", "ticket-1", stdin=REF + "\n")
    assert code == 0 and "keys shredded" in out
    code, out = run(env, "erase", "acme", "-", "--event-id", "ticket-1", stdin=REF + "\n")
    assert code == 0 and "already recorded" in out
    code, out = run(env, "erase", "acme", "-", stdin=REF + "\n")
    assert code == 1 and "subject_erased" in out
    assert REF not in out
