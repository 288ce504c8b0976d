"""Signed checkpoints: (sequence, chain head, time) signed with the ledger's Ed25519 key.

Rules this module keeps (``docs/audit.md`` states the format for outside verifiers):

- **Canonical signed bytes**, fixed width, big-endian::

      "ledger-checkpoint-v1" ‖ u64(sequence) ‖ head (32 bytes) ‖ u64(time, µs since 1970 UTC)

  The Ed25519 signature (RFC 8032, pure) covers exactly these bytes.
- **The public half is published** (``GET /v1/checkpoint-key``, ``ledger audit key``); its
  ``key_id`` is the first 8 bytes of SHA-256 of the raw 32-byte public key, in hex.
- **The private key never leaves configuration** (``LEDGER_CHECKPOINT_KEY`` or
  ``LEDGER_CHECKPOINT_KEY_FILE``: 32 random bytes, base64); errors never echo it.
- **One key, two statements, one checkpoint.** The same key also signs the Merkle log's tree
  head as a C2SP signed note (``ledger.integrity.notes``), which witnesses cosign: a
  checkpoint made since the Merkle log existed carries ``tree_size``, ``root`` and ``note``.
  The two signed messages cannot be confused: one starts with the 20 bytes above, the other
  with the origin line, and an origin never contains a NUL byte.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.integrity.notes import Note, NoteSigner, TreeHead

DOMAIN = b"ledger-checkpoint-v1"
_U64 = struct.Struct(">Q")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def signed_bytes(sequence: int, head: bytes, time_us: int) -> bytes:
    if len(head) != 32:
        raise ValueError("a chain head is 32 bytes")
    return DOMAIN + _U64.pack(sequence) + head + _U64.pack(time_us)


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).digest()[:8].hex()


def micros(at: datetime) -> int:
    delta = at.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class Checkpoint:
    sequence: int
    head: bytes
    time_us: int
    key_id: str
    signature: bytes
    tree_size: int | None = None  # None: signed before the Merkle log existed
    root: bytes | None = None
    note: str | None = None  # the signed note, with any witness cosignatures

    @property
    def signed_note(self) -> Note | None:
        return Note.parse(self.note) if self.note else None

    @property
    def time(self) -> str:
        at = datetime.fromtimestamp(self.time_us / 1_000_000, UTC)
        return at.isoformat(timespec="microseconds").replace("+00:00", "Z")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "sequence": self.sequence,
            "head": self.head.hex(),
            "time_us": self.time_us,
            "time": self.time,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "tree_size": self.tree_size,
            "root": base64.b64encode(self.root).decode("ascii") if self.root else None,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Checkpoint:
        """Raises ValueError (or KeyError) for anything that is not a version-1 checkpoint."""
        if body.get("version") != 1:
            raise ValueError("not a version 1 checkpoint")
        root, size = body.get("root"), body.get("tree_size")
        return cls(
            sequence=int(body["sequence"]),
            head=bytes.fromhex(body["head"]),
            time_us=int(body["time_us"]),
            key_id=str(body["key_id"]),
            signature=base64.b64decode(body["signature"], validate=True),
            tree_size=None if size is None else int(size),
            root=None if root is None else base64.b64decode(root, validate=True),
            note=None if body.get("note") is None else str(body["note"]),
        )


DEFAULT_ORIGIN = "compliance-ledger"


class CheckpointSigner:
    def __init__(self, private_key: bytes, origin: str = DEFAULT_ORIGIN) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(private_key)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(self.public_key)
        self.notes = NoteSigner(private_key, origin)

    @property
    def origin(self) -> str:
        return self.notes.vkey.name

    def sign(
        self, sequence: int, head: bytes, at: datetime, tree: tuple[int, bytes] | None = None
    ) -> Checkpoint:
        """Signs the chain head and, given ``tree`` (size, root), the tree head as a note."""
        time_us = micros(at)
        signature = self._key.sign(signed_bytes(sequence, head, time_us))
        if tree is None:
            return Checkpoint(sequence, head, time_us, self.key_id, signature)
        size, root = tree
        note = self.notes.sign(TreeHead(self.origin, size, root))
        return Checkpoint(sequence, head, time_us, self.key_id, signature, size, root, note.text)


def verify_signature(checkpoint: Checkpoint, public_key: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            checkpoint.signature,
            signed_bytes(checkpoint.sequence, checkpoint.head, checkpoint.time_us),
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def new_private_key() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes_raw()
