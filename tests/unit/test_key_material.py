"""Key material for configuration: ``ledger dev``'s ``dev-keys.json`` and ``ledger keys
generate``. Both include the checkpoint signing key; a development key, once made, never
changes (recorded data stays readable)."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

from typer.testing import CliRunner

from ledger.cli.dev import DEV_KEYS, _dev_keys
from ledger.cli.main import app
from ledger.integrity.checkpoints import CheckpointSigner
from ledger.process.settings import load

OLD_KEYS = {  # what dev-keys.json held before the checkpoint key existed
    "LEDGER_KEK": base64.b64encode(b"k" * 32).decode(),
    "LEDGER_LOOKUP_KEY": base64.b64encode(b"l" * 32).decode(),
}
SIGNING_KEYS = ["LEDGER_CHECKPOINT_KEY", "LEDGER_DOCUMENT_KEY"]  # Ed25519, added later


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _signs(checkpoint_key: str) -> bool:
    return len(CheckpointSigner(base64.b64decode(checkpoint_key)).public_key) == 32


def test_a_new_data_dir_gets_every_dev_key_readable_by_its_owner_only(tmp_path: Path) -> None:
    keys = _dev_keys(tmp_path)
    path = tmp_path / "dev-keys.json"
    assert sorted(keys) == sorted(DEV_KEYS) == sorted([*OLD_KEYS, *SIGNING_KEYS])
    assert all(len(base64.b64decode(v, validate=True)) == 32 for v in keys.values())
    assert _signs(keys["LEDGER_CHECKPOINT_KEY"])
    assert json.loads(path.read_text()) == keys
    assert _mode(path) == 0o600
    assert _dev_keys(tmp_path) == keys  # made once, then read


def test_an_older_dev_keys_file_gains_the_checkpoint_key_and_keeps_its_keys(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dev-keys.json"
    path.write_text(json.dumps(OLD_KEYS, indent=2))
    path.chmod(0o600)

    keys = _dev_keys(tmp_path)

    assert {k: keys[k] for k in OLD_KEYS} == OLD_KEYS
    assert set(keys) == {*OLD_KEYS, *SIGNING_KEYS}
    assert _signs(keys["LEDGER_CHECKPOINT_KEY"])
    assert json.loads(path.read_text()) == keys
    assert _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["dev-keys.json"]  # nothing half-written
    assert _dev_keys(tmp_path) == keys


def test_the_dev_keys_configure_a_checkpoint_signer(tmp_path: Path) -> None:
    keys = _dev_keys(tmp_path)
    settings = load({"LEDGER_DATA_DIR": str(tmp_path), **keys})
    assert settings.checkpoint_key == base64.b64decode(keys["LEDGER_CHECKPOINT_KEY"])


def test_keys_generate_prints_a_checkpoint_key_and_says_who_needs_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["keys", "generate"])
    assert result.exit_code == 0, result.output
    printed = dict(line.split("=", 1) for line in result.output.splitlines())
    assert list(printed) == ["LEDGER_KEK", "LEDGER_LOOKUP_KEY", *SIGNING_KEYS]
    assert _signs(printed["LEDGER_DOCUMENT_KEY"])
    assert len(set(printed.values())) == 4
    settings = load({"LEDGER_DATA_DIR": str(tmp_path), **printed})
    assert settings.checkpoint_key is not None
    assert _signs(printed["LEDGER_CHECKPOINT_KEY"])

    help_text = " ".join(CliRunner().invoke(app, ["keys", "generate", "--help"]).output.split())
    assert "Only the relay needs LEDGER_CHECKPOINT_KEY" in help_text
    assert "apart from the KEK" in help_text
