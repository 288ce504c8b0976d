"""Secrets given as a variable or as a file: ``NAME`` or ``NAME_FILE``, never both.

Secret stores (Docker and Compose ``secrets:``, Kubernetes, Vault agents) mount secrets as
files; ``NAME_FILE`` names such a file and its contents are the value, without the line end
such files usually carry. Rules this module keeps:

- **Errors never contain a secret.** They name the variable and, for files, the path (a
  path is not secret) and the reason it cannot be read — never the contents.
- **One source per secret.** Setting ``NAME`` and ``NAME_FILE`` together is an error rather
  than a silent preference, so an operator never runs with the value they did not mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class SettingError(ValueError):
    """A setting is wrong; the message names the variable and never holds a secret."""


def secret(env: Mapping[str, str], name: str) -> str | None:
    """The value of ``name``, or the contents of the file ``name_FILE`` names; None if unset."""
    path = env.get(f"{name}_FILE")
    if path and env.get(name):
        raise SettingError(f"set either {name} or {name}_FILE, not both")
    if not path:
        return env.get(name) or None
    value = read_text(f"{name}_FILE", path).rstrip("\r\n")
    if not value:
        raise SettingError(f"{name}_FILE {path} is empty")
    return value


def read_text(name: str, path: str) -> str:
    """The text of the file ``path`` that the variable ``name`` gives."""
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise SettingError(f"{name} {path} cannot be read: {reason}") from None


def readable_file(env: Mapping[str, str], name: str) -> str | None:
    """The path ``name`` gives, checked to be a readable file now (not read into memory)."""
    path = env.get(name)
    if not path:
        return None
    if not Path(path).is_file():
        raise SettingError(f"{name} {path} is not a file")
    try:
        with Path(path).open("rb"):
            pass
    except OSError as exc:
        raise SettingError(f"{name} {path} cannot be read: {exc.strerror}") from None
    return path
