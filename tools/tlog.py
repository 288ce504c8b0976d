"""The ledger's transparency-log formats for tools/verify_chain.py: stdlib + cryptography.

Written from the issue-17 spec (restated in docs/audit.md), sharing no code with the ledger:
section 1 (leaves and RFC 9162 Merkle trees and proofs), section 2 (checkpoints as C2SP
signed notes with witness cosignatures), section 3 (c2sp.org/tlog-proof text) and the bytes
section 4 signs. Everything here raises ``ValueError`` on malformed input or returns a
problem (a short reason) or ``None`` when a check holds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EMPTY_ROOT = hashlib.sha256(b"").digest()
ED25519, COSIGNATURE = 0x01, 0x04  # signed-note signature types
DASH = "\u2014 "  # em dash and space: how a signature line starts
TLOG_PROOF = "c2sp.org/tlog-proof@v1"


def u64(n: int) -> bytes:
    return struct.pack(">Q", n)


def lp(b: bytes) -> bytes:
    """bytes(b) = u32(len b) ‖ b; str(s) is lp of its UTF-8."""
    return struct.pack(">I", len(b)) + b


def b64(text: object) -> bytes:
    """Strict standard base64 with padding (RFC 4648 section 4)."""
    if not isinstance(text, str):
        raise ValueError(f"not base64 text: {text!r}")
    return base64.b64decode(text, validate=True)


def b64hash(text: object) -> bytes:
    digest = b64(text)
    if len(digest) != 32:
        raise ValueError(f"a hash is 32 bytes, not {len(digest)}")
    return digest


# Reading JSON members (malformed input raises ValueError)


def integer(obj: Mapping, name: str) -> int:
    """A JSON member that must be a non-negative integer."""
    value = obj[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name!r} is not a non-negative integer")
    return value


def hashes(obj: Mapping, name: str) -> list[bytes]:
    """A JSON member that must be a list of base64 hashes."""
    if not isinstance(obj[name], list):
        raise ValueError(f"{name!r} is not a list")
    return [b64hash(h) for h in obj[name]]


def text_or_none(obj: Mapping, name: str) -> str | None:
    """A JSON member that must be text or null (or absent)."""
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name!r} is not text")
    return value


# Section 1: leaves and the Merkle tree (RFC 9162 2.1)


def leaf(sequence: int, event: Mapping[str, object]) -> bytes:
    """Section 1: the leaf of the event at ``sequence``; ``event`` has originator_id,
    originator_version, topic and state (base64)."""
    originator = str(uuid.UUID(str(event["originator_id"])))  # canonical lower-case text
    return (
        b"ledger-leaf-v1"
        + u64(sequence)
        + lp(originator.encode())
        + u64(int(str(event["originator_version"])))
        + lp(str(event["topic"]).encode())
        + lp(b64(event["state"]))
    )


def leaf_hash(raw: bytes) -> bytes:
    """RFC 9162 2.1.1: SHA-256(0x00 ‖ leaf)."""
    return hashlib.sha256(b"\x00" + raw).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 2.1.1: SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class Tree:
    """RFC 9162 2.1.1 MTH, built leaf by leaf: the roots of the perfect subtrees the leaves
    so far make (largest first); the root folds them from the right."""

    def __init__(self) -> None:
        self.size = 0
        self._subtrees: list[bytes] = []

    def append(self, hashed_leaf: bytes) -> None:
        self._subtrees.append(hashed_leaf)
        n = self.size
        while n & 1:  # each trailing 1 bit of the old size: two equal subtrees to merge
            right = self._subtrees.pop()
            self._subtrees.append(node_hash(self._subtrees.pop(), right))
            n >>= 1
        self.size += 1

    def root(self) -> bytes:
        if not self._subtrees:
            return EMPTY_ROOT
        root = self._subtrees[-1]
        for subtree in reversed(self._subtrees[:-1]):
            root = node_hash(subtree, root)
        return root


def roots_at(hashed_leaves: Iterable[bytes], sizes: Iterable[int]) -> dict[int, bytes]:
    """MTH(D[n]) for every n in ``sizes`` not above the number of leaves."""
    wanted, tree = set(sizes), Tree()
    roots = {0: EMPTY_ROOT} if 0 in wanted else {}
    for hashed in hashed_leaves:
        tree.append(hashed)
        if tree.size in wanted:
            roots[tree.size] = tree.root()
    return roots


def verify_inclusion(
    index: int, size: int, hashed_leaf: bytes, path: Sequence[bytes], root: bytes
) -> str | None:
    """RFC 9162 2.1.3.2: the leaf hash is at ``index`` in the tree of ``size`` with ``root``."""
    if not 0 <= index < size:
        return f"leaf index {index} is not in a tree of size {size}"
    fn, sn, r = index, size - 1, hashed_leaf
    for p in path:
        if sn == 0:
            return "the proof is too long"
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        return "the proof is too short"
    if r != root:
        return "the root computed from the proof differs"
    return None


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, path: Sequence[bytes]
) -> str | None:
    """RFC 9162 2.1.4.2: the tree of ``second`` leaves extends the tree of ``first``."""
    if not 0 <= first <= second:
        return f"sizes {first} and {second} are not in order"
    if first == second or first == 0:
        if path:
            return "the proof should be empty"
        if first == second and first_root != second_root:
            return "equal sizes with different roots"
        if first == 0 and first_root != EMPTY_ROOT:
            return "the first root is not the empty tree's"
        return None
    if first & (first - 1) == 0:  # a power of 2: the old tree is a subtree of the new
        path = [first_root, *path]
    if not path:
        return "the proof is empty"
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return "the proof is too long"
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        return "the proof is too short"
    if fr != first_root:
        return "the first root computed from the proof differs"
    if sr != second_root:
        return "the second root computed from the proof differs"
    return None


# Section 2: checkpoints as C2SP signed notes


@dataclass(frozen=True)
class Vkey:
    """A signed-note verifier key: name+hex(key_id)+base64(type ‖ public key)."""

    name: str
    key_id: bytes
    kind: int
    public: bytes
    text: str


def key_id(name: str, kind: int, public: bytes) -> bytes:
    """C2SP signed-note: SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public).digest()[:4]


def _decimal(text: str) -> bool:
    """ASCII digits, no leading zeros."""
    return text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def parse_vkey(text: str, kind: int) -> Vkey:
    """Section 2: a log (type 0x01) or witness (type 0x04) vkey; raises ValueError."""
    name, _, rest = text.strip().partition("+")
    hex_id, _, encoded = rest.partition("+")
    raw = b64(encoded)
    if not _valid_name(name) or len(hex_id) != 8 or len(raw) != 33:
        raise ValueError(f"not a vkey: {text!r}")
    if raw[0] != kind:
        raise ValueError(f"vkey {text!r} has type {raw[0]:#04x}, not {kind:#04x}")
    if key_id(name, kind, raw[1:]).hex() != hex_id:
        raise ValueError(f"vkey {text!r}: its key id does not match its key")
    return Vkey(name, bytes.fromhex(hex_id), kind, raw[1:], text.strip())


@dataclass(frozen=True)
class Checkpoint:
    """Section 2: a checkpoint note's body and what it says."""

    body: str
    origin: str
    size: int
    root: bytes


@dataclass
class Opened:
    """A checkpoint note whose known signatures all verified."""

    checkpoint: Checkpoint
    log_signers: list[str] = field(default_factory=list)
    witnesses: list[str] = field(default_factory=list)

    def describe(self) -> str:
        who = f"signed by {', '.join(self.log_signers)}"
        who = who if self.log_signers else "log signature not checked"
        seen = f"; cosigned by {len(self.witnesses)}: {', '.join(self.witnesses)}"
        return f"tree size {self.checkpoint.size}, {who}{seen if self.witnesses else ''}"


def split_note(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """C2SP signed-note: (text, [(key name, key id ‖ signature)]); the text ends at the
    last blank line. Raises ValueError on a malformed note."""
    if not isinstance(text, str):
        raise ValueError("a note is text")
    if any(c < " " and c != "\n" for c in text):
        raise ValueError("a control character in the note")
    cut = text.rfind("\n\n")
    if cut < 0 or not text.endswith("\n"):
        raise ValueError("no blank line before signatures")
    body, signatures = text[: cut + 1], []
    for line in text[cut + 2 : -1].split("\n"):
        name, _, encoded = line.removeprefix(DASH).partition(" ")
        raw = b64(encoded) if line.startswith(DASH) and _valid_name(name) else b""
        if len(raw) < 5:
            raise ValueError(f"a malformed signature line: {line!r}")
        signatures.append((name, raw))
    if not signatures:
        raise ValueError("no signature lines")
    return body, signatures


def parse_checkpoint(body: str) -> Checkpoint:
    """C2SP tlog-checkpoint, section 2: origin, size, base64 root; no extension lines."""
    lines = body.split("\n")
    if len(lines) != 4 or lines[3] != "" or not lines[0]:
        raise ValueError("a checkpoint body is three lines")
    origin, size, root = lines[:3]
    if not _decimal(size):
        raise ValueError(f"tree size {size!r} is not a decimal")
    return Checkpoint(body, origin, int(size), b64hash(root))


def ed25519_holds(public: bytes, signature: bytes, message: bytes) -> bool:
    """RFC 8032 Ed25519 (pure)."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def signature_holds(vkey: Vkey, body: str, signed: bytes) -> bool:
    """C2SP signed-note (type 0x01) and tlog-cosignature (type 0x04): ``signed`` follows the
    4-byte key id of a signature line."""
    if vkey.kind == ED25519:
        return len(signed) == 64 and ed25519_holds(vkey.public, signed, body.encode())
    if len(signed) != 8 + 64:
        return False
    (timestamp,) = struct.unpack(">Q", signed[:8])
    message = f"cosignature/v1\ntime {timestamp}\n{body}".encode()
    return ed25519_holds(vkey.public, signed[8:], message)


def verify_note(text: str, keys: Sequence[Vkey]) -> tuple[str, list[Vkey]]:
    """C2SP signed-note verification: (the note's text, the known keys that signed it).
    Lines of unknown keys (name and key id) are ignored; a known key's line must verify, or
    the whole note is rejected (ValueError)."""
    body, signatures = split_note(text)
    known, signers = {(k.name, k.key_id): k for k in keys}, []
    for name, raw in signatures:
        vkey = known.get((name, raw[:4]))
        if vkey is None:
            continue
        if not signature_holds(vkey, body, raw[4:]):
            raise ValueError(f"the signature by {vkey.text} does not verify")
        if vkey not in signers:
            signers.append(vkey)
    return body, signers


def open_checkpoint(
    text: str, log_keys: Sequence[Vkey], witness_keys: Sequence[Vkey], quorum: int
) -> Opened:
    """Section 2, verification: the note verifies (``verify_note``), a known log key named
    as the origin signed it (unless no log key is given: then no log signature is checked)
    and ``quorum`` distinct known witnesses cosigned it. Raises ValueError with the reason."""
    body, signers = verify_note(text, [*log_keys, *witness_keys])
    opened = Opened(parse_checkpoint(body))
    opened.log_signers = [k.name for k in signers if k.kind == ED25519]
    opened.witnesses = [k.name for k in signers if k.kind == COSIGNATURE]
    if log_keys and opened.checkpoint.origin not in opened.log_signers:
        raise ValueError(f"no signature by a trusted log key for {opened.checkpoint.origin!r}")
    if len(opened.witnesses) < quorum:
        raise ValueError(f"{len(opened.witnesses)} of {quorum} witness cosignatures required")
    return opened


# Section 3: c2sp.org/tlog-proof text


@dataclass(frozen=True)
class TlogProof:
    index: int
    path: list[bytes]
    note: str


def parse_tlog_proof(text: str) -> TlogProof:
    """Section 3 (c2sp.org/tlog-proof@v1): header, optional unauthenticated "extra" line
    (ignored), "index N", one base64 hash per line, a blank line, the checkpoint note."""
    head, sep, note = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or lines[0] != TLOG_PROOF:
        raise ValueError(f"not a {TLOG_PROOF} text")
    if len(lines) > 1 and lines[1].startswith("extra "):
        b64(lines.pop(1).removeprefix("extra "))
    index = lines[1] if len(lines) > 1 else ""
    if not (index.startswith("index ") and _decimal(index.removeprefix("index "))):
        raise ValueError("no index line")
    return TlogProof(int(index[6:]), [b64hash(line) for line in lines[2:]], note)


# Section 4: the bytes a document's signature covers


def canonical(obj: object) -> bytes:
    """Section 4: canonical JSON."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def document_bytes(document: Mapping[str, object]) -> bytes:
    """Section 4: what a signed document's signature covers."""
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    return b"ledger-signed-document-v1\n" + canonical(unsigned)


DOCUMENT_FORMATS = ("ledger-consent-receipt/v1", "ledger-erasure-certificate/v1")


def claim_problem(claim: Mapping, event: Mapping) -> str | None:
    """Section 4, 3: the claim says what the event's non-personal fields hold."""
    try:
        state, originator = json.loads(b64(event["state"])), str(event["originator_id"])
        checks = [
            ("event_type", str(event["topic"]).endswith("." + str(claim["event_type"]))),
            ("subject_id", uuid.UUID(str(claim["subject_id"])) == uuid.UUID(originator)),
            ("tenant", state["tenant"] == claim["tenant"]),
            ("event_id", state["event_id"] == claim["event_id"]),
            ("recorded_at", state["timestamp"]["_data_"] == claim["recorded_at"]),
            ("purpose", "purpose" not in claim or state.get("purpose") == claim["purpose"]),
        ]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"the claim cannot be matched with the event ({type(exc).__name__}: {exc})"
    wrong = [name for name, holds in checks if not holds]
    verb = "does" if len(wrong) == 1 else "do"
    return f"the claim's {', '.join(wrong)} {verb} not match the event" if wrong else None
