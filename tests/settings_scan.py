"""Which ``LEDGER_*`` variables a module reads, found in its source (for the doc and compose
tests): every string constant that is a whole ``LEDGER_*`` name, and ``NAME_FILE`` for each
secret read through :func:`ledger.plumbing.secret_files.secret`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"LEDGER_[A-Z0-9_]+")


def variables_read(*paths: Path) -> set[str]:
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and NAME.fullmatch(str(node.value)):
                names.add(str(node.value))
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("secret", "_secret")
                and isinstance(node.args[1], ast.Constant)
            ):
                names.add(f"{node.args[1].value}_FILE")
    return names
