"""The report's JSON Schema, as shipped in ``docs/subject-report.schema.json``.

``python -m projections.reports.schema > docs/subject-report.schema.json`` regenerates it.
"""

from __future__ import annotations

import json
from typing import Any

from projections.reports.model import SubjectReport

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    schema = SubjectReport.model_json_schema(mode="serialization")
    return {"$schema": DRAFT, **schema}


def dumps() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(dumps(), end="")
