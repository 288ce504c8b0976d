"""tools/verify_chain.py (and tools/tlog.py) on the Merkle log, checkpoint notes, proofs and
signed documents (issue 17's spec). Every fixture is built here, from the spec, with helpers
of this file's own: nothing comes from the ledger's code."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import struct
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

TOOL = Path(__file__).resolve().parents[2] / "tools" / "verify_chain.py"


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_chain", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL_MODULE = load_tool()
TLOG: ModuleType = TOOL_MODULE.tlog


# Helpers written from the spec: encodings, the RFC 9162 tree, proofs, notes.


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def u64(n: int) -> bytes:
    return struct.pack(">Q", n)


def lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def hash_leaf(raw: bytes) -> bytes:
    return sha(b"\x00" + raw)


def mth(hashes: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, over leaf hashes."""
    if not hashes:
        return sha(b"")
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << (len(hashes) - 1).bit_length() - 1
    return sha(b"\x01" + mth(hashes[:k]) + mth(hashes[k:]))


def path(m: int, hashes: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[n])."""
    if len(hashes) == 1:
        return []
    k = 1 << (len(hashes) - 1).bit_length() - 1
    if m < k:
        return [*path(m, hashes[:k]), mth(hashes[k:])]
    return [*path(m - k, hashes[k:]), mth(hashes[:k])]


def subproof(m: int, hashes: list[bytes], whole: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1 SUBPROOF(m, D[n], b)."""
    if m == len(hashes):
        return [] if whole else [mth(hashes)]
    k = 1 << (len(hashes) - 1).bit_length() - 1
    if m <= k:
        return [*subproof(m, hashes[:k], whole), mth(hashes[k:])]
    return [*subproof(m - k, hashes[k:], False), mth(hashes[:k])]


def consistency(m: int, hashes: list[bytes]) -> list[bytes]:
    return [] if m in (0, len(hashes)) else subproof(m, hashes, True)


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def vkey(name: str, kind: int, key: Ed25519PrivateKey) -> str:
    """Section 2: name+hex(key_id)+base64(type ‖ public key)."""
    public = bytes([kind]) + raw_public(key)
    return f"{name}+{key_id(name, kind, key).hex()}+{b64(public)}"


def key_id(name: str, kind: int, key: Ed25519PrivateKey) -> bytes:
    return sha(name.encode() + b"\n" + bytes([kind]) + raw_public(key))[:4]


def signature_line(name: str, signed: bytes) -> str:
    return f"\u2014 {name} {b64(signed)}\n"


def log_line(body: str, name: str, key: Ed25519PrivateKey) -> str:
    return signature_line(name, key_id(name, 1, key) + key.sign(body.encode()))


def cosignature_line(body: str, name: str, key: Ed25519PrivateKey, time: int = 1796000000) -> str:
    message = f"cosignature/v1\ntime {time}\n{body}".encode()
    return signature_line(name, key_id(name, 4, key) + u64(time) + key.sign(message))


ORIGIN = "ledger.example/log"
LOG_KEY = Ed25519PrivateKey.generate()
LOG_VKEY = vkey(ORIGIN, 1, LOG_KEY)
WITNESSES = {f"witness{n}.example": Ed25519PrivateKey.generate() for n in (1, 2, 3)}
WITNESS_VKEYS = [vkey(name, 4, key) for name, key in WITNESSES.items()]
TOPIC = "ledger.domain.subject:Subject.ConsentGranted"
RECORDED_AT = "2026-12-04T10:38:58.848466+00:00"


def checkpoint_body(size: int, root: bytes) -> str:
    return f"{ORIGIN}\n{size}\n{b64(root)}\n"


def note(size: int, root: bytes, witnesses: int = 0, *, extra: str = "") -> str:
    """A checkpoint note signed by the log and cosigned by the first ``witnesses``."""
    body = checkpoint_body(size, root)
    lines = log_line(body, ORIGIN, LOG_KEY)
    for name in list(WITNESSES)[:witnesses]:
        lines += cosignature_line(body, name, WITNESSES[name])
    return body + "\n" + lines + extra


def event(n: int, personal: str = "c2VhbGVk") -> dict[str, Any]:
    """An event (section 3's "event" member) whose state has a sealed-looking field."""
    state = {
        "tenant": "acme",
        "event_id": f"evt-{n}",
        "timestamp": {"_type_": "datetime_iso", "_data_": RECORDED_AT},
        "purpose": "marketing",
        "email": {"_type_": "sealed", "_data_": personal},
    }
    return {
        "originator_id": str(uuid.UUID(int=1000 + n)),
        "originator_version": 1 + n % 3,
        "topic": TOPIC,
        "state": b64(json.dumps(state, sort_keys=True).encode()),
    }


def leaf_bytes(sequence: int, ev: dict[str, Any]) -> bytes:
    """Section 1."""
    return (
        b"ledger-leaf-v1"
        + u64(sequence)
        + lp(str(ev["originator_id"]).encode())
        + u64(int(str(ev["originator_version"])))
        + lp(str(ev["topic"]).encode())
        + lp(base64.b64decode(str(ev["state"])))
    )


SEQUENCES = [1, 2, 3, 5, 6, 8, 9, 10, 12, 13, 14]  # gaps: a leaf index is not a sequence
EVENTS = [event(n) for n in range(len(SEQUENCES))]
HASHES = [hash_leaf(leaf_bytes(s, e)) for s, e in zip(SEQUENCES, EVENTS, strict=True)]


def inclusion(index: int, size: int, witnesses: int = 0) -> dict[str, Any]:
    """Section 3 inclusion proof JSON."""
    root = mth(HASHES[:size])
    return {
        "sequence": SEQUENCES[index],
        "leaf_index": index,
        "tree_size": size,
        "root": b64(root),
        "event": EVENTS[index],
        "leaf_hash": b64(HASHES[index]),
        "proof": [b64(h) for h in path(index, HASHES[:size])],
        "checkpoint": note(size, root, witnesses),
        "tlog_proof": None,
    }


def consistency_json(first: int, second: int, hashes: list[bytes] = HASHES) -> dict[str, Any]:
    return {
        "first": first,
        "second": second,
        "first_root": b64(mth(hashes[:first])),
        "second_root": b64(mth(hashes[:second])),
        "proof": [b64(h) for h in consistency(first, hashes[:second])],
    }


def tlog_proof(index: int, size: int) -> str:
    hashes = "".join(b64(h) + "\n" for h in path(index, HASHES[:size]))
    return f"c2sp.org/tlog-proof@v1\nindex {index}\n{hashes}\n{note(size, mth(HASHES[:size]))}"


def sign_document(doc: dict[str, Any], key: Ed25519PrivateKey = LOG_KEY) -> None:
    """Section 4: signs ``doc`` (without its "signature") in place, naming the log vkey."""
    unsigned = {k: v for k, v in doc.items() if k != "signature"}
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    signed = key.sign(b"ledger-signed-document-v1\n" + canonical.encode())
    doc["signature"] = {"key": LOG_VKEY, "signature": b64(signed)}


def receipt(
    indices: tuple[int, ...] = (2, 7), events: list[dict[str, Any]] = EVENTS
) -> dict[str, Any]:
    """Section 4: a consent receipt resting on the events at ``indices``."""
    hashes = [hash_leaf(leaf_bytes(s, e)) for s, e in zip(SEQUENCES, events, strict=True)]
    size = len(hashes)
    evidence = []
    for i in indices:
        state = json.loads(base64.b64decode(str(events[i]["state"])))
        claim = {
            "sequence": SEQUENCES[i],
            "event_type": "ConsentGranted",
            "tenant": "acme",
            "subject_id": events[i]["originator_id"],
            "event_id": state["event_id"],
            "recorded_at": RECORDED_AT,
            "purpose": "marketing",
        }
        proof = [b64(h) for h in path(i, hashes)]
        evidence.append({"claim": claim, "event": events[i], "leaf_index": i, "proof": proof})
    doc: dict[str, Any] = {
        "format": "ledger-consent-receipt/v1",
        "document": {"version": "2.0", "processing": ["marketing"], "language": "fr"},
        "evidence": evidence,
        "checkpoint": note(size, mth(hashes), witnesses=1),
    }
    sign_document(doc)
    return doc


# Running the tool


Run = Callable[..., tuple[int, str]]


class Text(str):
    """An argument to pass as a file holding this text."""


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """Runs the tool in-process; ``Text`` and JSON objects are passed as files."""
    count = iter(range(1000))

    def arg(content: object) -> str:
        if isinstance(content, str) and not isinstance(content, Text):
            return content
        target = tmp_path / f"input{next(count)}"
        text = content if isinstance(content, str) else json.dumps(content)
        target.write_text(text, encoding="utf-8", newline="")
        return str(target)

    def go(*args: object, keys: bool = True) -> tuple[int, str]:
        argv = [arg(a) for a in args]
        if keys:
            argv += ["--log-key", LOG_VKEY]
        capsys.readouterr()
        code = TOOL_MODULE.main(argv)
        out = capsys.readouterr()
        return code, out.out + out.err

    return go


def quorum(k: int) -> list[str]:
    return [a for v in WITNESS_VKEYS for a in ("--witness-key", v)] + ["--quorum", str(k)]


# Section 1: the tree


RFC6962_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]


def test_the_tree_has_the_rfc6962_known_roots() -> None:
    hashes = [TLOG.leaf_hash(raw) for raw in RFC6962_LEAVES]
    size8 = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    size4 = "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"
    roots = TLOG.roots_at(hashes, [0, 4, 8])
    assert (roots[8].hex(), roots[4].hex()) == (size8, size4)
    assert roots[0] == sha(b"") == TLOG.EMPTY_ROOT
    assert (mth(hashes).hex(), mth(hashes[:4]).hex()) == (size8, size4)  # this file's helper
    assert TLOG.roots_at(hashes, range(9)) == {n: mth(hashes[:n]) for n in range(9)}


def test_every_proof_of_a_small_tree_verifies_and_a_changed_one_does_not() -> None:
    hashes = [TLOG.leaf_hash(raw) for raw in RFC6962_LEAVES]
    for n in range(1, 9):
        root = mth(hashes[:n])
        for m in range(n):
            proof = path(m, hashes[:n])
            assert TLOG.verify_inclusion(m, n, hashes[m], proof, root) is None
            assert TLOG.verify_inclusion(m, n, hashes[m - 1], proof, root)
            assert TLOG.verify_inclusion(m, n, hashes[m], [*proof, root], root)
            assert TLOG.verify_inclusion(n, n, hashes[m], proof, root)
            if m ^ 1 < n:
                assert TLOG.verify_inclusion(m ^ 1, n, hashes[m], proof, root)
        for m in range(n + 1):
            proof = consistency(m, hashes[:n])
            first = mth(hashes[:m])
            assert TLOG.verify_consistency(m, n, first, root, proof) is None, (m, n)
            if 0 < m < n:
                assert TLOG.verify_consistency(m, n, first, sha(root), proof)
                assert TLOG.verify_consistency(m, n, sha(first), root, proof)
                assert TLOG.verify_consistency(m, n, first, root, [*proof[:-1], sha(b"x")])


# Section 2: notes


def test_the_c2sp_signed_note_example_verifies() -> None:
    example = TLOG.parse_vkey(
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", TLOG.ED25519
    )
    text = (
        "This is an example message.\n\n\u2014 example.com/foo "
        "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
    )
    assert TLOG.verify_note(text, [example]) == ("This is an example message.\n", [example])
    with pytest.raises(ValueError, match="does not verify"):
        TLOG.verify_note(text.replace("example message", "example massage"), [example])
    with pytest.raises(ValueError, match="type"):
        TLOG.parse_vkey(example.text, TLOG.COSIGNATURE)


def test_a_note_needs_the_witness_quorum(run: Run) -> None:
    size = 6
    code, out = run("--proof", inclusion(3, size, witnesses=1), *quorum(2))
    assert code == 1 and "1 of 2 witness cosignatures required" in out
    assert "FAILED: proof" in out
    code, out = run("--proof", inclusion(3, size, witnesses=2), *quorum(2))
    assert code == 0 and out.endswith("OK\n"), out
    assert "cosigned by 2: witness1.example, witness2.example" in out


def test_unknown_keys_are_ignored_but_a_known_keys_bad_signature_rejects(run: Run) -> None:
    size, root = 6, mth(HASHES[:6])
    body = checkpoint_body(size, root)
    stranger = cosignature_line(body, "stranger.example", Ed25519PrivateKey.generate())
    namesake = cosignature_line(body, "witness1.example", Ed25519PrivateKey.generate())
    proof = inclusion(3, size, witnesses=2)
    proof["checkpoint"] = note(size, root, 2, extra=stranger + namesake)
    code, out = run("--proof", proof, *quorum(2))
    assert code == 0, out

    other_body = checkpoint_body(size, sha(root))  # witness3's key, over another checkpoint
    proof["checkpoint"] += cosignature_line(
        other_body, "witness3.example", WITNESSES["witness3.example"]
    )
    code, out = run("--proof", proof, *quorum(2))
    assert code == 1 and "witness3.example" in out and "does not verify" in out


def test_a_note_must_be_signed_by_a_trusted_log_key(run: Run) -> None:
    proof = inclusion(4, 9)
    code, out = run(
        "--proof", proof, "--log-key", vkey(ORIGIN, 1, Ed25519PrivateKey.generate()), keys=False
    )
    assert code == 1 and "no signature by a trusted log key" in out
    impostor = vkey("other.example/log", 1, LOG_KEY)  # the right key under another name
    code, out = run("--proof", proof, "--log-key", impostor, keys=False)
    assert code == 1 and "no signature by a trusted log key" in out
    code, out = run(
        "--proof", proof, keys=False
    )  # no --log-key: the signature is not checked, and said
    assert code == 0 and "warning: no --log-key" in out


# Section 3: proofs


def test_an_inclusion_proof_verifies_offline(run: Run) -> None:
    for index, size in [(0, 1), (0, 11), (5, 6), (10, 11), (7, 9)]:
        code, out = run("--proof", inclusion(index, size))
        assert code == 0, out
        assert f"inclusion: holds (sequence {SEQUENCES[index]}, leaf {index} of {size})" in out


def _flip(text: str, at: int = 0) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at] ^= 1
    return b64(bytes(raw))


def test_a_changed_byte_fails_an_inclusion_proof(run: Run) -> None:
    good = inclusion(5, 9)
    changed_state = json.loads(json.dumps(good))
    changed_state["event"]["state"] = _flip(good["event"]["state"], 3)
    changed_hash = {**good, "proof": [_flip(good["proof"][0]), *good["proof"][1:]]}
    changed_root = {**good, "root": _flip(str(good["root"]), 31)}
    body = checkpoint_body(9, mth(HASHES[:9]))
    forged_body = body.replace("\n9\n", "\n8\n")
    changed_note = {**good, "checkpoint": str(good["checkpoint"]).replace(body, forged_body)}
    cases = {
        "state": (changed_state, "leaf hash: DOES NOT HOLD"),
        "proof hash": (changed_hash, "inclusion: DOES NOT HOLD"),
        "root": (changed_root, "inclusion: DOES NOT HOLD"),
        "note body": (changed_note, "checkpoint: DOES NOT HOLD: the signature by"),
    }
    for what, (proof, verdict) in cases.items():
        code, out = run("--proof", proof)
        assert code == 1 and verdict in out and "FAILED: proof" in out, (what, out)
    code, out = run("--proof", changed_root)
    assert "the note's root differs" in out  # the note no longer says the proof's root


def test_a_tlog_proof_text_verifies_with_its_leaf_event(run: Run) -> None:
    leaf_event = {"sequence": SEQUENCES[4], **EVENTS[4]}
    code, out = run("--proof", Text(tlog_proof(4, 11)), "--leaf-event", leaf_event, *quorum(0))
    assert code == 0 and "inclusion: holds (leaf 4 of 11)" in out, out
    other = {"sequence": SEQUENCES[5], **EVENTS[4]}
    code, out = run("--proof", Text(tlog_proof(4, 11)), "--leaf-event", other)
    assert code == 1 and "inclusion: DOES NOT HOLD" in out
    code, out = run("--proof", Text(tlog_proof(4, 11)))
    assert code == 2 and "needs --leaf-event" in out
    proof = {**inclusion(4, 11), "tlog_proof": tlog_proof(4, 11)}
    code, out = run("--proof", proof, "--leaf-event", leaf_event)
    assert code == 0 and "tlog_proof: holds" in out and "leaf event: holds" in out, out
    code, out = run("--proof", {**proof, "tlog_proof": tlog_proof(3, 11)})
    assert code == 1 and "tlog_proof: DOES NOT HOLD" in out


def test_a_consistency_proof_verifies_and_a_rewritten_history_does_not(run: Run) -> None:
    for first, second in [(0, 5), (1, 11), (4, 11), (6, 11), (7, 7), (3, 8)]:
        code, out = run("--proof", consistency_json(first, second))
        assert code == 0 and f"consistency: holds (size {first} to {second})" in out, out

    rewritten = list(HASHES)
    rewritten[2] = hash_leaf(leaf_bytes(SEQUENCES[2], event(2, personal="b3RoZXI=")))
    proof = consistency_json(6, 11, rewritten)
    proof["first_root"] = b64(mth(HASHES[:6]))  # the tree the auditor saw before
    code, out = run("--proof", proof)
    assert code == 1 and "consistency: DOES NOT HOLD" in out

    old, new = note(6, mth(HASHES[:6]), 1), note(11, mth(HASHES), 1)
    code, out = run(
        "--proof", consistency_json(6, 11), "--consistency", Text(old), Text(new), *quorum(1)
    )
    assert code == 0 and "new checkpoint: holds (tree size 11" in out, out
    code, out = run("--proof", proof, "--consistency", Text(old), Text(note(11, mth(rewritten), 1)))
    assert code == 1 and "consistency: DOES NOT HOLD" in out
    code, out = run("--proof", consistency_json(6, 11), "--consistency", Text(new), Text(old))
    assert code == 1 and "the note is for tree size 11, not 6" in out


# Section 4: documents


def test_a_signed_document_verifies_whatever_its_personal_fields_hold(run: Run) -> None:
    for personal in ["c2VhbGVk", b64(bytes(range(48))), "shredded"]:
        events = [event(n, personal) for n in range(len(SEQUENCES))]
        code, out = run("--document", receipt(events=events), *quorum(1))
        assert code == 0, out
        assert out.count("holds") == 4  # signature, checkpoint, two evidence items
        assert "evidence 1 (sequence 10, ConsentGranted): holds" in out


def test_a_document_with_an_edited_claim_or_field_or_a_forged_signature_fails(run: Run) -> None:
    doc = receipt()
    edited_claim = json.loads(json.dumps(doc))
    edited_claim["evidence"][0]["claim"]["purpose"] = "analytics"
    code, out = run("--document", edited_claim)
    assert code == 1 and "signature: DOES NOT HOLD" in out
    verdict = "evidence 0 (sequence 3, ConsentGranted): DOES NOT HOLD: the claim's purpose does"
    assert verdict in out

    sign_document(edited_claim)  # even signed by the log: the claim is not what happened
    code, out = run("--document", edited_claim)
    assert code == 1 and "signature: holds" in out and "claim's purpose does not match" in out

    for field, value in [("subject_id", str(uuid.UUID(int=7))), ("event_type", "ConsentWithdrawn")]:
        other = json.loads(json.dumps(doc))
        other["evidence"][1]["claim"][field] = value
        sign_document(other)
        code, out = run("--document", other)
        assert code == 1 and f"claim's {field} does not match" in out, out

    edited = json.loads(json.dumps(doc))
    edited["document"]["language"] = "de"
    code, out = run("--document", edited)
    assert code == 1 and "signature: DOES NOT HOLD: the signature does not verify" in out

    forged = json.loads(json.dumps(doc))
    sign_document(forged, Ed25519PrivateKey.generate())  # names the log's vkey
    code, out = run("--document", forged)
    assert code == 1 and "the signature does not verify" in out

    code, out = run(
        "--document", doc, "--log-key", vkey(ORIGIN, 1, Ed25519PrivateKey.generate()), keys=False
    )
    assert code == 1 and "not by a trusted log key" in out

    moved = json.loads(json.dumps(doc))
    moved["evidence"][0]["leaf_index"] = 3
    sign_document(moved)
    code, out = run("--document", moved)
    assert code == 1 and "evidence 0 (sequence 3, ConsentGranted): DOES NOT HOLD" in out


def test_a_document_needs_its_checkpoint_to_hold(run: Run) -> None:
    code, out = run("--document", receipt(), *quorum(2))  # the receipt's checkpoint has one witness
    assert code == 1 and "checkpoint: DOES NOT HOLD: 1 of 2 witness" in out
    with pytest.raises(SystemExit) as exits:  # a usage error: there is no key to trust
        run("--document", receipt(), keys=False)
    assert exits.value.code == 2


# Exports with checkpoint notes (sections 1 and 2), as `ledger audit export` writes them


def export_lines() -> list[str]:
    """docs/audit.md, "The chain", over EVENTS."""
    lines, head, previous = [], bytes(32), 0
    for seq, ev in zip(SEQUENCES, EVENTS, strict=True):
        entry = (
            b"ledger-chain-v1"
            + u64(seq)
            + u64(previous)
            + lp(str(ev["originator_id"]).encode())
            + u64(int(str(ev["originator_version"])))
            + lp(str(ev["topic"]).encode())
            + lp(base64.b64decode(str(ev["state"])))
        )
        head = sha(head + entry)
        lines.append(json.dumps({"sequence": seq, **ev, "previous": previous, "hash": head.hex()}))
        previous = seq
    return lines


def chain_checkpoint(index: int, note_text: str | None, key: Ed25519PrivateKey) -> dict:
    """docs/audit.md, "Checkpoints", at the event of leaf ``index``, with section 2's fields."""
    seq, time_us = SEQUENCES[index], 1796000000000000
    head = bytes.fromhex(json.loads(export_lines()[index])["hash"])
    signed = key.sign(b"ledger-checkpoint-v1" + u64(seq) + head + u64(time_us))
    root = mth(HASHES[: index + 1])
    return {
        "version": 1,
        "sequence": seq,
        "head": head.hex(),
        "time_us": time_us,
        "time": "2026-11-30T00:00:00.000000Z",
        "key_id": sha(raw_public(key))[:8].hex(),
        "signature": b64(signed),
        "tree_size": None if note_text is None else index + 1,
        "root": None if note_text is None else b64(root),
        "note": note_text,
    }


def test_an_export_with_checkpoint_notes(run: Run) -> None:
    key = Ed25519PrivateKey.generate()
    public = ["--public-key", b64(raw_public(key))]
    export = "\n".join(export_lines()) + "\n"
    old = chain_checkpoint(2, None, key)  # signed before the Merkle log existed
    good = [old, *(chain_checkpoint(i, note(i + 1, mth(HASHES[: i + 1]), 2), key) for i in (5, 10))]

    def checkpoints(cps: list[dict]) -> Text:
        return Text("".join(json.dumps(cp) + "\n" for cp in cps))

    code, out = run(Text(export), "--checkpoints", checkpoints(good), *public, *quorum(2))
    assert code == 0 and out.count("holds") == 3, out
    assert "checkpoint at 8: holds (tree size 6, signed by ledger.example/log; cosigned by 2" in out
    assert "11 events up to sequence 14" in out and out.endswith("OK\n")

    code, out = run(Text(export), "--checkpoints", checkpoints(good), *public, *quorum(3))
    assert code == 1 and "FAILED at position 8: checkpoint: note: 2 of 3 witness" in out

    wrong_root = chain_checkpoint(5, note(6, mth(HASHES[:5]), 2), key)
    wrong_root["root"] = b64(mth(HASHES[:5]))
    code, out = run(Text(export), "--checkpoints", checkpoints([wrong_root]), *public)
    assert code == 1 and "note: root differs from the tree recomputed at size 6" in out

    off_by_one = chain_checkpoint(5, note(5, mth(HASHES[:5])), key)
    off_by_one["tree_size"], off_by_one["root"] = 5, b64(mth(HASHES[:5]))
    code, out = run(Text(export), "--checkpoints", checkpoints([off_by_one]), *public)
    assert code == 1 and "note: the tree of size 5 does not end at sequence 8" in out

    beyond = chain_checkpoint(10, note(12, mth(HASHES)), key)
    beyond["tree_size"] = 12
    code, out = run(Text(export), "--checkpoints", checkpoints([beyond]), *public)
    assert code == 1 and "note: tree size 12 exceeds the export's 11 events" in out

    lines = export_lines()
    row = json.loads(lines[4])
    row["state"] = _flip(row["state"], 2)
    tampered = "\n".join([*lines[:4], json.dumps(row), *lines[5:]]) + "\n"
    code, out = run(Text(tampered), "--checkpoints", checkpoints(good), *public)
    assert code == 1 and f"FAILED at position {SEQUENCES[4]}: changed" in out


def test_unusable_input_exits_2(run: Run) -> None:
    assert run("--proof", inclusion(1, 3), "--log-key", "not a vkey", keys=False)[0] == 2
    assert run("--proof", inclusion(1, 3), "--log-key", WITNESS_VKEYS[0], keys=False)[0] == 2
    assert run("--proof", {"sequence": 1, "leaf_index": 0})[0] == 2
    assert run("--proof", {**inclusion(1, 3), "proof": ["not base64!"]})[0] == 2
    assert run("--proof", Text("not json"))[0] == 2
    with pytest.raises(SystemExit) as exits:
        run("--quorum", "1")
    assert exits.value.code == 2


def test_the_tool_runs_as_a_script_from_any_directory(tmp_path: Path) -> None:
    proof = tmp_path / "proof.json"
    proof.write_text(json.dumps(inclusion(2, 11, witnesses=1)))
    done = subprocess.run(
        [sys.executable, str(TOOL), "--proof", "proof.json", "--log-key", LOG_VKEY, *quorum(1)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.endswith("OK\n")
