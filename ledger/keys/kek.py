"""The key-encryption key ring: the current KEK and the previous ones still needed to unwrap.

Rules this module keeps:

- **New wraps use the current KEK only.** A previous KEK only unwraps, chosen by the
  ``kek_id`` stored beside each wrapped secret (the wrap's associated data binds that id, so
  a wrap cannot be opened under another version by mistake).
- **A KEK leaves the ring by leaving configuration.** Once ``ledger keys status`` shows that a
  previous KEK wraps nothing, the operator removes it from ``LEDGER_KEK_PREVIOUS`` (or the
  KEK file) and destroys it; from then on a backup of the key tables made under it is
  useless.
- **Configuration errors never contain key material.** Messages name the variable, the entry's
  position and, once it is known to be a well-formed id, the KEK id — never a key, nor text
  that might be one.

Configuration (``docs/operations.md``): ``LEDGER_KEK`` + ``LEDGER_KEK_ID`` (the current KEK) and
``LEDGER_KEK_PREVIOUS`` (``id:base64`` entries separated by commas or white space), or
``LEDGER_KEK_FILE``: a file of ``id:base64`` lines, the first one current (``#`` comments
allowed), for secret stores that mount files. The two ways exclude each other.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ledger.keys.crypto import CannotOpen, KekNotConfigured, KeyEncryptionKey

DEFAULT_KEK_ID = "kek-1"
KEK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ID_RULE = "letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit"
_ENV_NAMES = ("LEDGER_KEK", "LEDGER_KEK_ID", "LEDGER_KEK_PREVIOUS")


class KekConfigError(ValueError):
    """The KEK configuration is missing a part or malformed; the message says which."""


@dataclass(frozen=True)
class KekConfig:
    current_id: str
    current: bytes = field(repr=False)
    previous: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        seen = {self.current_id: self.current}
        for kek_id, key in self.previous:
            if kek_id in seen:
                raise KekConfigError(f"KEK id {kek_id} is configured twice")
            if key in seen.values():
                raise KekConfigError(
                    f"previous KEK {kek_id} holds the same key as another configured KEK: "
                    "a new KEK version needs a new key (`ledger keys generate`)"
                )
            seen[kek_id] = key


def decode_key(source: str, raw: str) -> bytes:
    """A 32-byte key from base64; ``source`` names where it came from in errors."""
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KekConfigError(f"{source} is not valid base64") from None
    if len(key) != 32:
        raise KekConfigError(f"{source} must decode to 32 bytes, got {len(key)}")
    return key


def check_kek_id(source: str, raw: str) -> str:
    if not KEK_ID.match(raw):
        raise KekConfigError(f"{source} is not a valid KEK id ({_ID_RULE})")
    return raw


def parse_entries(source: str, entries: Sequence[str]) -> tuple[tuple[str, bytes], ...]:
    """``id:base64`` entries; errors name the entry by position (1-based)."""
    parsed = []
    for number, entry in enumerate(entries, start=1):
        where = f"{source} entry {number}"
        kek_id, sep, raw = entry.partition(":")
        if not sep or not raw:
            raise KekConfigError(f"{where} is not KEK_ID:BASE64_KEY")
        kek_id = check_kek_id(f"{where}'s id", kek_id.strip())
        parsed.append((kek_id, decode_key(f"{where} (KEK {kek_id})", raw)))
    return tuple(parsed)


def from_environment(env: Mapping[str, str], explicit: Mapping[str, str]) -> KekConfig | None:
    """The KEK configuration, or None if no KEK is configured.

    ``env`` is the environment with fallbacks filled in (a running ``ledger dev``'s state);
    ``explicit`` the process environment alone, so a KEK file set there is not reported as
    conflicting with a development key from the state file.
    """
    path = env.get("LEDGER_KEK_FILE")
    if path:
        both = [name for name in _ENV_NAMES if explicit.get(name)]
        if both:
            raise KekConfigError(f"set either LEDGER_KEK_FILE or {', '.join(both)}, not both")
        return read_file(Path(path))
    raw_current, raw_previous = env.get("LEDGER_KEK"), env.get("LEDGER_KEK_PREVIOUS")
    if not raw_current:
        if raw_previous:
            raise KekConfigError("LEDGER_KEK_PREVIOUS is set but LEDGER_KEK is not")
        return None
    current_id = check_kek_id("LEDGER_KEK_ID", env.get("LEDGER_KEK_ID") or DEFAULT_KEK_ID)
    previous = parse_entries("LEDGER_KEK_PREVIOUS", (raw_previous or "").replace(",", " ").split())
    return KekConfig(current_id, decode_key("LEDGER_KEK", raw_current), previous)


def read_file(path: Path) -> KekConfig:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise KekConfigError(f"LEDGER_KEK_FILE {path} cannot be read: {reason}") from None
    lines = [line.strip() for line in text.splitlines()]
    entries = parse_entries(
        "LEDGER_KEK_FILE", [line for line in lines if line and not line.startswith("#")]
    )
    if not entries:
        raise KekConfigError(f"LEDGER_KEK_FILE {path} holds no KEK (lines of KEK_ID:BASE64_KEY)")
    (current_id, current), *previous = entries
    return KekConfig(current_id, current, tuple(previous))


class KeyRing:
    """A :class:`~ledger.keys.crypto.KeyEncryptionKey` made of the current KEK and previous ones:
    it wraps with the current one and unwraps with the one named by ``kek_id``."""

    def __init__(self, current: KeyEncryptionKey, previous: Sequence[KeyEncryptionKey] = ()):
        self.current = current
        self.key_id = current.key_id
        self._by_id: dict[str, KeyEncryptionKey] = {}
        for kek in (current, *previous):
            if kek.key_id in self._by_id:
                raise KekConfigError(f"KEK id {kek.key_id} is configured twice")
            self._by_id[kek.key_id] = kek

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The current KEK's id first, then the previous ones."""
        return tuple(self._by_id)

    def holds(self, kek_id: str) -> bool:
        return kek_id in self._by_id

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        return self.current.wrap(data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes, *, kek_id: str | None = None) -> bytes:
        """Unwraps with the KEK named by ``kek_id``. Without it (a caller that did not read
        the row's ``kek_id``), each configured KEK is tried, the current one first: safe,
        because a wrap's associated data binds the id of the KEK that made it."""
        if kek_id is None:
            return self._unwrap_with_any(wrapped, context)
        kek = self._by_id.get(kek_id)
        if kek is None:
            raise KekNotConfigured(
                f"wrapped under KEK {kek_id!r}, which is not configured (destroyed, or missing "
                "from LEDGER_KEK_PREVIOUS / LEDGER_KEK_FILE)"
            )
        return kek.unwrap(wrapped, context, kek_id=kek.key_id)

    def _unwrap_with_any(self, wrapped: bytes, context: bytes) -> bytes:
        for kek in self._by_id.values():
            try:
                return kek.unwrap(wrapped, context, kek_id=kek.key_id)
            except CannotOpen:
                continue
        raise CannotOpen("wrapped key does not open under any configured KEK")
