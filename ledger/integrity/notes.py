"""Checkpoints as C2SP signed notes: the tree head witnesses cosign and proofs carry.

Rules this module keeps (the specs are c2sp.org/signed-note, /tlog-checkpoint and
/tlog-cosignature; ``docs/audit.md`` restates what the ledger uses of them):

- **The body is exactly three lines**: the log's origin, the tree size in decimal, the root
  hash in base64, each ending in a newline. No extension lines: witnesses vouch for the first
  three only, so anything else would be unaudited.
- **The log signs with Ed25519** (signature type 0x01), under the key name = origin; its key
  id is ``SHA-256(origin ‖ 0x0A ‖ 0x01 ‖ public key)[:4]``, and its verifier key (vkey) is
  ``origin+hex(key id)+base64(0x01 ‖ public key)``.
- **Witnesses cosign** with timestamped Ed25519 cosignatures (type 0x04) over
  ``"cosignature/v1\\ntime <t>\\n" ‖ body``; a cosignature line is
  ``— name base64(key id ‖ u64(t) ‖ signature)``.
- **Verification ignores unknown keys, rejects a note whose known signature fails**, and a
  policy may require ``quorum`` of the known witnesses (:func:`verify_checkpoint`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = 0x01
COSIGNATURE = 0x04
DASH = "\u2014"
_U64 = struct.Struct(">Q")
MAX_SIGNATURES = 32


class NoteError(ValueError):
    """Not a well-formed signed note or checkpoint."""


def key_id(name: str, kind: int, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public_key).digest()[:4]


def check_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name) or not name.isprintable():
        raise NoteError(f"a key name or origin must be non-empty, without spaces or '+': {name!r}")
    return name


@dataclass(frozen=True)
class VerifierKey:
    """A key a note's signature lines are checked against: a log key or a witness key."""

    name: str
    kind: int
    public_key: bytes

    @property
    def id(self) -> bytes:
        return key_id(self.name, self.kind, self.public_key)

    def __str__(self) -> str:
        material = base64.b64encode(bytes([self.kind]) + self.public_key).decode()
        return f"{self.name}+{self.id.hex()}+{material}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """A vkey (``name+hex id+base64(type ‖ key)``), of type 0x01 or 0x04."""
        parts = text.strip().split("+", 2)  # the base64 key may itself hold a "+"
        if len(parts) != 3:
            raise NoteError("a verifier key is name+keyid+base64 key")
        name, hex_id, material = parts
        try:
            raw = base64.b64decode(material, validate=True)
            wanted = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError):
            raise NoteError("a verifier key's id is hex and its key base64") from None
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE):
            raise NoteError("only Ed25519 (0x01) and Ed25519 cosignature (0x04) keys are known")
        key = cls(check_name(name), raw[0], raw[1:])
        if key.id != wanted:
            raise NoteError("a verifier key's id does not match its name and key")
        return key

    def verify(self, body: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (the bytes after the key id) is this key's over ``body``."""
        try:
            public = Ed25519PublicKey.from_public_bytes(self.public_key)
            if self.kind == ED25519:
                public.verify(signature, body)
            else:
                if len(signature) != 8 + 64:
                    return False
                (timestamp,) = _U64.unpack(signature[:8])
                public.verify(signature[8:], cosigned_message(body, timestamp))
        except (InvalidSignature, ValueError):
            return False
        return True


def cosigned_message(body: bytes, timestamp: int) -> bytes:
    return b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + body


@dataclass(frozen=True)
class Signature:
    name: str
    id: bytes
    signature: bytes  # what follows the key id

    @property
    def line(self) -> str:
        encoded = base64.b64encode(self.id + self.signature).decode()
        return f"{DASH} {self.name} {encoded}\n"

    @property
    def timestamp(self) -> int | None:
        """A cosignature's time (seconds since 1970), read from its bytes."""
        return _U64.unpack(self.signature[:8])[0] if len(self.signature) == 72 else None


def parse_signature_line(line: str) -> Signature:
    if not line.startswith(DASH + " "):
        raise NoteError("a signature line starts with an em dash and a space")
    parts = line[2:].rstrip("\n").split(" ")
    if len(parts) != 2:
        raise NoteError("a signature line is: em dash, space, key name, space, base64")
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise NoteError("a signature is base64") from None
    if len(raw) < 5:
        raise NoteError("a signature is a key id and at least one byte")
    return Signature(check_name(parts[0]), raw[:4], raw[4:])


@dataclass(frozen=True)
class Note:
    body: bytes  # the note text, ending in a newline
    signatures: tuple[Signature, ...] = field(default=())

    @property
    def text(self) -> str:
        return self.body.decode() + "\n" + "".join(s.line for s in self.signatures)

    @classmethod
    def parse(cls, text: str) -> Note:
        if any(ord(c) < 0x20 and c != "\n" for c in text):
            raise NoteError("a signed note holds no control characters but newlines")
        cut = text.rfind("\n\n")
        if cut < 0 or not text.endswith("\n"):
            raise NoteError("a signed note is text, a blank line, then signature lines")
        lines = text[cut + 2 :].splitlines(keepends=True)
        if not lines or len(lines) > MAX_SIGNATURES:
            raise NoteError(f"a signed note has 1 to {MAX_SIGNATURES} signature lines")
        return cls(text[: cut + 1].encode(), tuple(parse_signature_line(x) for x in lines))

    def with_signatures(self, more: tuple[Signature, ...]) -> Note:
        seen = {(s.name, s.id, s.signature) for s in self.signatures}
        fresh = tuple(s for s in more if (s.name, s.id, s.signature) not in seen)
        return Note(self.body, self.signatures + fresh)

    def verified_by(self, keys: Sequence[VerifierKey]) -> list[VerifierKey]:
        """The known keys whose signatures verify. Raises :class:`NoteError` if a known key's
        signature fails: such a note is malformed, whatever else it carries."""
        good = []
        for key in keys:
            for sig in self.signatures:
                if sig.name == key.name and sig.id == key.id:
                    if not key.verify(self.body, sig.signature):
                        raise NoteError(f"the signature of {key.name} does not verify")
                    good.append(key)
                    break
        return good


@dataclass(frozen=True)
class TreeHead:
    origin: str
    size: int
    root: bytes

    @property
    def body(self) -> bytes:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n".encode()

    @classmethod
    def parse(cls, body: bytes) -> TreeHead:
        lines = body.decode().split("\n")
        if len(lines) != 4 or lines[3] != "":
            raise NoteError("a checkpoint body is three lines: origin, size, root hash")
        origin, size, root = lines[:3]
        if not size.isdigit() or (size != "0" and size.startswith("0")):
            raise NoteError("a tree size is decimal without leading zeroes")
        try:
            digest = base64.b64decode(root, validate=True)
        except binascii.Error:
            raise NoteError("a root hash is base64") from None
        if len(digest) != 32:
            raise NoteError("a root hash is 32 bytes")
        return cls(check_name(origin), int(size), digest)


class NoteSigner:
    """The log's Ed25519 key as a note signer (the same key that signs checkpoints)."""

    def __init__(self, private_key: bytes, origin: str) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(private_key)
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.vkey = VerifierKey(check_name(origin), ED25519, raw)

    def sign(self, head: TreeHead) -> Note:
        if head.origin != self.vkey.name:
            raise ValueError("a checkpoint is signed under its own origin")
        signature = Signature(self.vkey.name, self.vkey.id, self._key.sign(head.body))
        return Note(head.body, (signature,))


def cosign(private_key: bytes, name: str, note: Note, timestamp: int) -> Signature:
    """A witness's cosignature (what a tlog-witness returns); for witnesses and tests."""
    key = Ed25519PrivateKey.from_private_bytes(private_key)
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    signed = key.sign(cosigned_message(note.body, timestamp))
    return Signature(name, key_id(name, COSIGNATURE, raw), _U64.pack(timestamp) + signed)


@dataclass(frozen=True)
class Verdict:
    head: TreeHead
    log_key: VerifierKey
    witnesses: list[VerifierKey]


def verify_checkpoint(
    text: str,
    log_keys: Sequence[VerifierKey],
    witness_keys: Sequence[VerifierKey] = (),
    quorum: int = 0,
) -> Verdict:
    """Parses and verifies a checkpoint: one of ``log_keys`` must have signed it, and at
    least ``quorum`` distinct ``witness_keys`` must have cosigned it. Raises NoteError."""
    note = Note.parse(text)
    head = TreeHead.parse(note.body)
    logs = note.verified_by([k for k in log_keys if k.name == head.origin])
    if not logs:
        raise NoteError(f"no known key of {head.origin} signed this checkpoint")
    cosigners = note.verified_by([k for k in witness_keys if k.kind == COSIGNATURE])
    if len(cosigners) < quorum:
        raise NoteError(f"{len(cosigners)} of the required {quorum} witness cosignatures verify")
    return Verdict(head, logs[0], cosigners)
