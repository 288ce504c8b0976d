"""``ledger report`` and ``ledger tenants subject-reports`` against a real PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pypdfium2 as pdfium
from typer.testing import CliRunner

from ledger.cli.main import app
from ledger.domain.subject import Subject
from ledger.process.runtime import open_ledger, open_reader
from ledger.process.settings import load
from tests import builders as b
from tests.history import ALICE, DAVE, catch_up, scripted_history


def test_report_by_reference_from_stdin_is_written_and_recorded(
    settings_environ: dict[str, str], tmp_path: Path
) -> None:
    settings = load(settings_environ)
    ledger, reader = open_ledger(settings), open_reader(settings)
    try:
        ledger.register_tenant(b.TENANT, "Acme")
        ledger.register_tenant("globex", "Globex")
        ids = scripted_history(ledger)
        catch_up(settings, reader)
        runner = CliRunner()

        result = runner.invoke(app, ["report", "acme", "-"], env=settings_environ, input=ALICE)
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout_bytes)
        assert body["subject_ref"] == ALICE and body["requester"]["scope"] == "cli"
        alice = ledger.find_subject(b.TENANT, ALICE)
        assert alice is not None
        event = ledger.subject_events(alice.id)[-1]
        assert isinstance(event, Subject.AccessReportGenerated)
        assert event.sha256 == hashlib.sha256(result.stdout_bytes).hexdigest()
        assert (event.event_id, event.producer) == (body["report_id"], "cli")

        out = tmp_path / "dave.pdf"
        args = ["report", "acme", "--subject-id", ids["dave"], "--format", "pdf", "--out", str(out)]
        result = runner.invoke(app, args, env=settings_environ)
        assert result.exit_code == 0, result.output
        text = "".join(p.get_textpage().get_text_range() for p in pdfium.PdfDocument(out))
        assert "ERASED" in text and DAVE not in text

        gone = runner.invoke(app, ["report", "acme", "-"], env=settings_environ, input=DAVE)
        assert gone.exit_code == 1 and "--subject-id" in gone.output and DAVE not in gone.output

        policy = ["tenants", "subject-reports", "acme", "--allow"]
        assert "staff and the subject" in runner.invoke(app, policy, env=settings_environ).output
        assert ledger.tenant("acme").allow_subject_reports
    finally:
        ledger.close()
        reader.close()
