"""After the checkpoint key is replaced, checkpoints signed before still hold for an auditor
who keeps the old public key, and a replay (which uses every key the ledger published)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import psycopg
from typer.testing import CliRunner

from ledger.cli.main import app
from ledger.integrity.checkpoint_store import CheckpointTable, make_checkpoint
from ledger.integrity.checkpoints import CheckpointSigner, new_private_key
from ledger.process.runtime import open_ledger, open_reader
from ledger.process.settings import load
from projections.replay import service
from projections.replay.registry import Replays
from tests import builders as b


def test_checkpoints_from_before_a_key_rotation_hold_under_their_own_key(
    settings_environ: dict[str, str],
) -> None:
    settings = load(settings_environ)
    ledger = open_ledger(settings)
    old, new = CheckpointSigner(new_private_key()), CheckpointSigner(new_private_key())
    try:
        ledger.register_tenant(b.TENANT, "Acme")
        with psycopg.connect(settings.require_database(), autocommit=True) as conn:
            table = CheckpointTable(conn, settings.database_schema)
            ledger.record([b.define_purpose(), b.grant(b.REF)])
            assert make_checkpoint(ledger.store, table, old, ledger.store.max_notification_id())
            ledger.record([b.withdraw(b.REF)])
            assert make_checkpoint(ledger.store, table, new, ledger.store.max_notification_id())
    finally:
        ledger.close()
    keys = [base64.b64encode(s.public_key).decode() for s in (old, new)]
    runner = CliRunner()

    both = runner.invoke(
        app,
        ["audit", "verify", "--public-key", keys[0], "--public-key", keys[1]],
        env=settings_environ,
    )
    only_new = runner.invoke(
        app, ["audit", "verify", "--public-key", keys[1]], env=settings_environ
    )

    assert both.exit_code == 0, both.output
    assert both.stdout.count("): holds") == 2
    assert only_new.exit_code == 1
    assert f"does not verify under any key given (signed with key {old.key_id})" in only_new.stdout
    replays, reader = Replays.connect(settings), open_reader(settings)
    try:
        built = service.run(
            settings, reader, replays, service.start(replays, datetime.now(UTC), "t")
        )
    finally:
        reader.close()
        replays.close()
    assert built.audit.ok and [c.holds for c in built.audit.checkpoints] == [True, True]
