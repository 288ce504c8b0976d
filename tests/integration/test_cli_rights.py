"""``ledger rights`` against a real PostgreSQL: each right recorded, refusals by reason."""

from __future__ import annotations

from typer.testing import CliRunner

from ledger.cli.main import app
from ledger.domain.values import LegalBasis
from ledger.process.runtime import open_ledger
from ledger.process.settings import load
from tests.builders import REF, define_purpose, grant
from tests.erasure_cases import events_of, kinds
from tests.ledger_cases import ready


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env, input=REF + "\n")
    return result.exit_code, result.output


def test_each_right_from_the_command_line(settings_environ: dict[str, str]) -> None:
    ledger = open_ledger(load(settings_environ))
    try:
        ready(ledger)
        analytics = define_purpose("analytics", "", text="", basis=LegalBasis.LEGITIMATE_INTERESTS)
        ledger.record([analytics, define_purpose("offers", direct_marketing=True), grant(REF)])
    finally:
        ledger.close()
    env = settings_environ
    restrict = ("rights", "restrict", "acme", "-", "case-3", "--grounds", "LEGAL_CLAIMS")
    code, out = run(env, *restrict, "--purpose", "newsletter", "--note", "Alice's dispute")
    assert code == 0 and "restricted under case-3 (newsletter)" in out
    code, out = run(env, *restrict)
    assert code == 1 and "restriction_exists" in out
    code, out = run(env, "rights", "restrict", "acme", "-", "case-4", "--grounds", "BORED")
    assert code == 2 and "invalid (schema_invalid): grounds must be one of" in out
    code, out = run(env, "rights", "lift", "acme", "-", "case-3")
    assert code == 0 and "restriction case-3 lifted" in out
    code, out = run(env, "rights", "object", "acme", "-", "newsletter")
    assert code == 1 and "objection_not_applicable" in out
    code, out = run(env, "rights", "object", "acme", "-", "offers", "--reason", "No ads")
    assert code == 0 and "objection to offers recorded" in out
    code, out = run(env, "rights", "grounds", "acme", "-", "offers", "lia-1", "--reasoning", "x")
    assert code == 1 and "objection_absolute" in out
    assert REF not in out

    ledger = open_ledger(load(settings_environ))
    try:
        assert kinds(events_of(ledger, REF))[-3:] == [
            "ProcessingRestricted",
            "RestrictionLifted",
            "ObjectionRaised",
        ]
    finally:
        ledger.close()
