"""docker-compose.yml agrees with the code: the variables it sets are ones the settings read,
each ledger service's environment loads and has what the processes require, every service
runs a real ``ledger`` command, and nothing secret is written in the file."""

from __future__ import annotations

import base64
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from psycopg.conninfo import conninfo_to_dict

from ledger.cli.main import app
from ledger.process.settings import load
from tests.settings_scan import variables_read

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
# The modules whose variables ``ledger.process.settings.load`` reads.
SETTINGS_MODULES = ("process/settings.py", "keys/kek.py", "kafka/security.py")
ISSUE_COMMANDS = {"ingest", "relay", "project", "serve", "notify"}
SECRET_NAME = re.compile(r"PASSWORD|KEK|KEY|SECRET|TOKEN|JAAS")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]  # type: ignore[no-any-return]


def ledger_services() -> dict[str, dict[str, Any]]:
    """The services built from the ledger's Dockerfile."""
    return {name: s for name, s in services().items() if s.get("build") == "."}


def variables_the_code_reads() -> set[str]:
    return variables_read(*(ROOT / "ledger" / module for module in SETTINGS_MODULES))


def test_the_scan_of_the_settings_finds_what_it_should() -> None:
    found = variables_the_code_reads()
    assert {
        "LEDGER_DATABASE_URL",
        "LEDGER_DATABASE_PASSWORD_FILE",
        "LEDGER_KAFKA_BOOTSTRAP",
        "LEDGER_KAFKA_SASL_PASSWORD_FILE",
        "LEDGER_KEK_FILE",
        "LEDGER_LOOKUP_KEY_FILE",
        "LEDGER_API_PORT",
    } <= found


def test_every_ledger_variable_in_the_file_is_one_the_settings_read() -> None:
    known = variables_the_code_reads()
    for name, service in services().items():
        unknown = {v for v in service.get("environment", {}) if v.startswith("LEDGER_")} - known
        assert unknown == set(), name


def test_the_services_the_issue_names_are_all_there() -> None:
    assert {"postgres", "kafka"} <= set(services())
    assert {s["command"][0] for s in ledger_services().values()} >= ISSUE_COMMANDS
    kafka = services()["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    assert not any("ZOOKEEPER" in v for v in kafka["environment"])


def test_every_ledger_service_runs_a_real_command_of_the_one_image() -> None:
    registered = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    images = set()
    for name, service in ledger_services().items():
        command = service["command"]
        if not command[0].startswith("-"):
            assert command[0] in registered, name
        images.add(service["image"])
    assert len(images) == 1


def secret_files(tmp_path: Path) -> dict[str, Path]:
    """Stand-ins for the files in $LEDGER_SECRETS_DIR, in the formats docs/deploy.md gives."""
    b64 = base64.b64encode
    contents = {
        "postgres_password": secrets.token_urlsafe(24) + "\n",
        "kafka_password": secrets.token_urlsafe(24) + "\n",
        "kek": f"kek-1:{b64(secrets.token_bytes(32)).decode()}\n",
        "lookup_key": b64(secrets.token_bytes(32)).decode() + "\n",
        "checkpoint_key": b64(secrets.token_bytes(32)).decode() + "\n",
        "document_key": b64(secrets.token_bytes(32)).decode() + "\n",
    }
    paths = {}
    for name, text in contents.items():
        paths[name] = tmp_path / name
        paths[name].write_text(text)
    return paths


@pytest.mark.parametrize("name", sorted(ledger_services()))
def test_each_ledger_service_environment_loads_with_what_the_processes_need(
    name: str, tmp_path: Path
) -> None:
    service = ledger_services()[name]
    files = secret_files(tmp_path)
    env = {}
    for variable, value in service["environment"].items():
        value = str(value)
        if value.startswith("/run/secrets/"):
            secret = value.removeprefix("/run/secrets/")
            assert secret in service["secrets"], f"{name}: {variable} needs secret {secret}"
            value = str(files[secret])
        env[variable] = value
    settings = load({**env, "LEDGER_DATA_DIR": str(tmp_path)})
    settings.require_database()
    settings.require_kafka()
    settings.require_keys()
    assert settings.kafka_security.uses_sasl
    assert (settings.checkpoint_key is not None) == (name == "ledger-relay")
    assert (settings.document_key is not None) == (name == "ledger-serve")


def test_only_the_relay_holds_the_checkpoint_key() -> None:
    holders = {
        name
        for name, service in ledger_services().items()
        if "checkpoint_key" in service["secrets"]
        or any(v.startswith("LEDGER_CHECKPOINT_KEY") for v in service["environment"])
    }
    assert holders == {"ledger-relay"}


def test_the_api_signs_documents_with_a_key_of_its_own() -> None:
    """Receipts and certificates are signed where they are served; the key that signs
    history stays with the relay (docs/audit.md, "Signed documents")."""
    holders = {
        name for name, service in ledger_services().items() if "document_key" in service["secrets"]
    }
    assert holders == {"ledger-serve"}


def test_the_api_listens_on_all_interfaces_on_the_published_port() -> None:
    serve = next(s for s in ledger_services().values() if s["command"] == ["serve"])
    env = serve["environment"]
    assert env["LEDGER_API_HOST"] == "0.0.0.0"  # noqa: S104 (in its container)
    published = {int(p.rsplit(":", 1)[1]) for p in serve["ports"]}
    assert published == {int(env["LEDGER_API_PORT"])}
    assert "/healthz" in " ".join(serve["healthcheck"]["test"])


def test_every_long_running_service_has_a_health_check_and_state_is_on_volumes() -> None:
    for name, service in services().items():
        if "cli" in service.get("profiles", []):
            continue
        assert service["healthcheck"]["test"], name
        assert service.get("restart") == "unless-stopped", name
    declared = set(compose()["volumes"])
    for name in ("postgres", "kafka"):
        mounted = {v.split(":", 1)[0] for v in services()[name]["volumes"]}
        assert mounted <= declared and mounted, name


def test_no_secret_is_written_in_the_file() -> None:
    for name, service in services().items():
        for variable, value in service.get("environment", {}).items():
            if SECRET_NAME.search(variable) and not variable.endswith("_FILE"):
                text = str(value)
                assert text.startswith("${"), f"{name}: {variable}"
            if variable.endswith("_FILE"):
                assert str(value).startswith("/run/secrets/"), f"{name}: {variable}"
        url = service.get("environment", {}).get("LEDGER_DATABASE_URL")
        if url:
            assert "password" not in conninfo_to_dict(url), name
        for secret in service.get("secrets", []):
            assert secret in compose()["secrets"], f"{name}: undefined secret {secret}"
    for secret, source in compose()["secrets"].items():
        assert source["file"].startswith("${"), f"{secret} must come from outside the repo"
    # Nothing that looks like a key (32 bytes in base64, or longer) anywhere in the text.
    assert re.search(r"[A-Za-z0-9+/]{40,}={0,2}", COMPOSE.read_text()) is None
