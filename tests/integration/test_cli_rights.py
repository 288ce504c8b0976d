"""``ledger rights`` against a real PostgreSQL: each right recorded, refusals by reason."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ledger.cli.main import app
from ledger.domain.values import LegalBasis
from ledger.process.runtime import open_ledger, open_reader
from ledger.process.settings import load
from tests.builders import REF, collect, define_purpose, grant
from tests.erasure_cases import events_of, kinds
from tests.history import catch_up
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
        assert kinds(events_of(ledger, REF))[-5:] == [
            "ProcessingRestricted",
            "ChangeNoticeDue",
            "RestrictionLifted",
            "ChangeNoticeDue",
            "ObjectionRaised",
        ]
    finally:
        ledger.close()


def test_a_correction_from_the_command_line_reads_the_value_from_stdin(
    settings_environ: dict[str, str],
) -> None:
    ledger = open_ledger(load(settings_environ))
    try:
        ready(ledger)
        ledger.record([collect(REF, event_id="c-1", description="12 Rose Lane")])
    finally:
        ledger.close()
    rectify = ("rights", "rectify", "acme", "-", "c-1", "description", "--reason", "typo")
    result = CliRunner().invoke(
        app, list(rectify), env=settings_environ, input=f"{REF}\n14 Rose Lane\n"
    )
    assert result.exit_code == 0 and "description of c-1 corrected" in result.output
    assert "14 Rose Lane" not in result.output and REF not in result.output
    refused = CliRunner().invoke(
        app,
        ["rights", "rectify", "acme", "-", "c-1", "note"],
        env=settings_environ,
        input=f"{REF}\nx\n",
    )
    assert refused.exit_code == 1 and "field_not_rectifiable" in refused.output
    empty = CliRunner().invoke(app, list(rectify), env=settings_environ, input=f"{REF}\n\n")
    assert empty.exit_code == 2 and "no corrected value" in empty.output

    ledger = open_ledger(load(settings_environ))
    try:
        found = ledger.find_subject("acme", REF)
        assert found is not None
        fixed, _notice = ledger.subject_events(found.id)[-2:]
        assert ledger.keys.open(found.id, "description", fixed.value) == "14 Rose Lane"
    finally:
        ledger.close()


def test_the_register_from_the_command_line(settings_environ: dict[str, str]) -> None:
    settings = load(settings_environ)
    ledger = open_ledger(settings)
    try:
        ready(ledger)
        ledger.record([grant(REF)])
    finally:
        ledger.close()
    env = settings_environ
    arrived = "2026-10-01T09:00:00+00:00"  # more than a month ago: overdue
    code, out = run(
        env,
        "requests",
        "open",
        "acme",
        "-",
        "ACCESS",
        "--channel",
        "letter",
        "--received-at",
        arrived,
        "--event-id",
        "req-1",
    )
    assert code == 0 and "request req-1 opened" in out
    code, out = run(env, "requests", "open", "acme", "-", "ERASURE", "--channel", "letter")
    assert code == 2 and "an erasure request is an ErasureRequested" in out
    code, out = run(
        env, "requests", "extend", "acme", "-", "req-1", "--months", "3", "--reason", "many"
    )
    assert code == 2 and "months must be 1 or 2" in out
    code, out = run(env, "requests", "complete", "acme", "-", "req-1")
    assert code == 2 and "either --fulfilled-by" in out
    reader = open_reader(settings)
    try:
        catch_up(settings, reader)
    finally:
        reader.close()
    listed = CliRunner().invoke(app, ["requests", "list", "acme", "--state", "overdue"], env=env)
    assert listed.exit_code == 0, listed.output
    [entry] = [json.loads(line) for line in listed.output.splitlines()]
    assert (entry["request_id"], entry["kind"], entry["overdue"]) == ("req-1", "ACCESS", True)
    assert "details" not in entry
    code, out = run(env, "requests", "complete", "acme", "-", "req-1", "--refused", "no id")
    assert code == 0 and "request req-1: refused" in out
