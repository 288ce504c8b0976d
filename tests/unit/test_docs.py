"""The docs list what the code has: every schema, field and union member and every rejection
reason in the contract; every configuration variable and metric in the guides (README and
docs/)."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from schemas import SCHEMA_DIR
from tests.settings_scan import variables_read

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract.md"


def _schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(SCHEMA_DIR.glob("*.avsc")):
        schema = json.loads(path.read_text())
        yield f"{schema['namespace']}.{schema['name']}", schema


def _section(text: str, full_name: str) -> str | None:
    parts = text.split(f"### `{full_name}`", 1)
    return None if len(parts) == 1 else parts[1].split("\n### ", 1)[0]


def _field_row(section: str, field: str) -> str:
    for line in section.splitlines():
        if line.startswith(f"| `{field}` |"):
            return line
    return ""


def _union_members(avro_type: Any) -> Iterator[str]:
    """Short names of every union member in a field's type, nested ones included."""
    if isinstance(avro_type, list):
        for member in avro_type:
            yield (member.rsplit(".", 1)[-1] if isinstance(member, str) else member["type"])
            yield from _union_members(member)
    elif isinstance(avro_type, dict):
        for key in ("items", "values", "type"):
            if key in avro_type and not isinstance(avro_type[key], str):
                yield from _union_members(avro_type[key])


def test_every_schema_field_is_documented_for_producers() -> None:
    text = CONTRACT.read_text()
    missing = []
    for full_name, schema in _schemas():
        body = _section(text, full_name)
        if body is None:
            missing.append(full_name)
            continue
        missing += [
            f"{full_name}.{f['name']}"
            for f in schema.get("fields", [])
            if f"`{f['name']}`" not in body
        ]
    assert missing == []


def test_every_union_member_is_in_its_fields_row() -> None:
    """A union such as LedgerRecord.event grows a branch: the field's row must name it."""
    text = CONTRACT.read_text()
    missing = []
    for full_name, schema in _schemas():
        body = _section(text, full_name) or ""
        for field in schema.get("fields", []):
            row = _field_row(body, field["name"])
            cells = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", row))
            missing += [
                f"{full_name}.{field['name']}: {member}"
                for member in _union_members(field["type"])
                if member not in cells
            ]
    assert missing == []


README = CONTRACT.parents[1] / "README.md"
OPERATIONS = CONTRACT.parent / "operations.md"  # the operators' guide: every setting


def _all_docs() -> str:
    """The README and every guide under docs/."""
    return "\n".join(p.read_text() for p in [README, *sorted(CONTRACT.parent.glob("*.md"))])


# Read by the code, but no setting of their own.
NOT_SETTINGS = {
    # Only the stem of LEDGER_DATABASE_PASSWORD_FILE: the password itself goes in the URL.
    "LEDGER_DATABASE_PASSWORD",
}


def _configuration_table() -> list[str]:
    section = OPERATIONS.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `LEDGER_")]


def _documented(row: str) -> set[str]:
    """The names a row's first cell gives: ``LEDGER_A_B`` / ``_C`` stands for ``LEDGER_A_C``
    (``LEDGER_A_B_C`` for ``_FILE``, which is appended)."""
    cell = row.split("|")[1]
    names = re.findall(r"`(LEDGER_[A-Z0-9_]+|_[A-Z0-9_]+)`", cell)
    first, found = names[0], set()
    for name in names:
        if not name.startswith("_"):
            found.add(name)
        elif name == "_FILE":
            found.add(first + name)
        else:
            found.add(first.rsplit("_", 1)[0] + name)
    return found


def _read_by_the_code() -> set[str]:
    ledger = CONTRACT.parents[1] / "ledger"
    modules = ("process/settings.py", "keys/kek.py", "kafka/security.py", "servers/apache_jars.py")
    read = variables_read(*(ledger / m for m in modules))
    tests = variables_read(CONTRACT.parents[1] / "tests" / "conftest.py")
    return (read | {n for n in tests if n.startswith("LEDGER_TEST_")}) - NOT_SETTINGS


def test_the_configuration_table_lists_every_variable_the_code_reads() -> None:
    documented = set().union(*map(_documented, _configuration_table()))
    read = _read_by_the_code()
    assert {"LEDGER_WRITE_TIMEOUT", "LEDGER_APACHE_KAFKA_LIBS", "LEDGER_TEST_KAFKA"} <= read
    assert sorted(read - documented) == []
    assert sorted(documented - read) == []


def _metrics_in_the_code() -> dict[str, set[str]]:
    """Each metric the API exposes, as Prometheus names it (``_total`` on counters), with its
    label names, read from the two modules that define them."""
    api = CONTRACT.parents[1] / "projections" / "api"
    found: dict[str, set[str]] = {}
    for module in ("collector.py", "metrics.py"):
        for node in ast.walk(ast.parse((api / module).read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            kind = node.func.id
            if kind not in ("GaugeMetricFamily", "CounterMetricFamily", "Counter", "Histogram"):
                continue
            name = ast.literal_eval(node.args[0])
            labels = next(
                (ast.literal_eval(k.value) for k in node.keywords if k.arg in LABEL_ARGS), ()
            )
            suffix = "_total" if kind in ("CounterMetricFamily", "Counter") else ""
            found[name + suffix] = set(labels)
    return found


LABEL_ARGS = ("labels", "labelnames")
NOT_METRICS = {
    "ledger_events",
    "ledger_topic",
}  # the event table; a certificate's copy (docs/audit.md)


def test_every_metric_the_docs_name_exists_with_those_labels() -> None:
    """Every `ledger_*` name in backticks in the README and the guides is a metric; it and its
    labels exist, and every metric the API exposes is named."""
    metrics = _metrics_in_the_code()
    assert "ledger_write_transaction_age_seconds" in metrics
    named = re.findall(r"`(?:rate\()?(ledger_[a-z_]+)\)?(?:\{([^}`]*)\})?", _all_docs())
    wrong = []
    for name, labels in named:
        if name in NOT_METRICS:
            continue
        given = {label.split("=")[0] for label in labels.split(",") if label}
        if name not in metrics or not given <= metrics[name]:
            wrong.append(f"{name}{{{labels}}}")
    assert wrong == []
    assert set(metrics) <= {name for name, _ in named}


# Codes a RuleViolation may carry that never reach the rejected topic: the base class's, a
# tenant registered twice (an operator's command) and the notifier's own erasure steps.
NOT_INGEST_REASONS = {"rule_violation", "tenant_exists", "erasure_step_out_of_order"}


def _reasons_the_ingest_can_give() -> set[str]:
    root = CONTRACT.parents[1]
    rules = ast.parse((root / "ledger" / "domain" / "rules.py").read_text())
    codes = {
        ast.literal_eval(node.value)
        for node in ast.walk(rules)
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["code"]
    }
    ingest = ast.parse((root / "consumers" / "ingest.py").read_text())
    for node in ast.walk(ingest):  # Rejection(code, detail), Outcome("rejected", code, detail)
        name = getattr(getattr(node, "func", None), "id", None)
        if isinstance(node, ast.Call) and name in ("Rejection", "Outcome"):
            code = node.args[0 if name == "Rejection" else 1]
            if isinstance(code, ast.Constant):
                codes.add(code.value)
    return codes - NOT_INGEST_REASONS


def test_the_contract_reason_table_is_every_rejection_reason() -> None:
    table = CONTRACT.read_text().split("| reason | when |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE))
    reasons = _reasons_the_ingest_can_give()
    assert {"purpose_not_consent_based", "undecodable", "internal_error"} <= reasons
    assert sorted(reasons ^ documented) == []
