"""The producer documentation lists every schema and field that exists."""

from __future__ import annotations

import json
from pathlib import Path

from schemas import SCHEMA_DIR

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract.md"


def test_every_schema_field_is_documented_for_producers() -> None:
    text = CONTRACT.read_text()
    missing = []
    for path in sorted(SCHEMA_DIR.glob("*.avsc")):
        schema = json.loads(path.read_text())
        full_name = f"{schema['namespace']}.{schema['name']}"
        section = text.split(f"### `{full_name}`", 1)
        if len(section) == 1:
            missing.append(full_name)
            continue
        body = section[1].split("\n### ", 1)[0]
        missing += [
            f"{full_name}.{f['name']}"
            for f in schema.get("fields", [])
            if f"`{f['name']}`" not in body
        ]
    assert missing == []
