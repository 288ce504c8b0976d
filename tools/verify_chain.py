#!/usr/bin/env python3
"""Standalone verifier of a compliance-ledger export: Python's standard library + cryptography.

It shares no code with the ledger on purpose: it follows docs/audit.md, so an auditor can
read it beside that document and trust neither the ledger's code nor its database.

    python verify_chain.py EXPORT.jsonl [--checkpoints FILE.jsonl]... [--public-key BASE64]

EXPORT.jsonl is what ``ledger audit export`` writes; a checkpoints file has one checkpoint
(JSON, as served by ``GET /v1/checkpoints``) per line. Exit status: 0 verified, 1 a problem
(the first bad position and its reason are printed), 2 unusable input.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS = bytes(32)


def u64(n: int) -> bytes:
    return struct.pack(">Q", n)


def lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def entry(seq: int, previous: int, row: dict) -> bytes:
    """docs/audit.md, "Chain": the bytes hashed after the previous hash."""
    originator = str(uuid.UUID(row["originator_id"]))  # canonical lower-case form
    return (
        b"ledger-chain-v1"
        + u64(seq)
        + u64(previous)
        + lp(originator.encode())
        + u64(int(row["originator_version"]))
        + lp(row["topic"].encode())
        + lp(base64.b64decode(row["state"], validate=True))
    )


def checkpoint_bytes(cp: dict) -> bytes:
    """docs/audit.md, "Checkpoints": the bytes the Ed25519 signature covers."""
    head = bytes.fromhex(cp["head"])
    assert len(head) == 32, "a head is 32 bytes"
    return b"ledger-checkpoint-v1" + u64(int(cp["sequence"])) + head + u64(int(cp["time_us"]))


def verify_export(lines) -> tuple[int, list[tuple[int, str]], dict[int, bytes]]:
    """Returns (events, problems as (position, reason), recomputed hash by sequence)."""
    problems: list[tuple[int, str]] = []
    recomputed: dict[int, bytes] = {}
    running, last_event = GENESIS, 0  # the chain recomputed over the events as they are
    stored_seq, stored_hash = 0, GENESIS  # the previous stored link
    events = 0
    for line in lines:
        row = json.loads(line)
        seq = int(row["sequence"])
        has_event = row.get("event", "present") is not None
        has_link = row.get("hash") is not None
        if has_event:
            events += 1
            running = hashlib.sha256(running + entry(seq, last_event, row)).digest()
            last_event = seq
            recomputed[seq] = running
        if not has_event:
            problems.append((seq, "deleted: a chain link without its event"))
        elif not has_link:
            problems.append((seq, "unchained: an event without a chain link"))
        elif int(row["previous"]) > stored_seq:
            problems.append((int(row["previous"]), f"deleted: {seq} is chained to a missing event"))
        elif int(row["previous"]) < stored_seq:
            problems.append((stored_seq, f"inserted: {seq} is chained past it"))
        elif (
            hashlib.sha256(stored_hash + entry(seq, stored_seq, row)).digest().hex() != row["hash"]
        ):
            problems.append((seq, "changed: stored columns differ from what was chained"))
        if has_link:
            stored_seq, stored_hash = seq, bytes.fromhex(row["hash"])
    return events, problems, recomputed


def signed_by(cp: dict, key: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(
            base64.b64decode(cp["signature"]), checkpoint_bytes(cp)
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def check_checkpoint(cp: dict, recomputed: dict[int, bytes], keys: list[bytes]) -> str | None:
    """``keys``: the published keys trusted (old ones too, after a rotation); none: the
    signature is not checked."""
    if keys and not any(signed_by(cp, key) for key in keys):
        return "signature does not verify under any key given"
    seq = int(cp["sequence"])
    if seq not in recomputed:
        return "no event at its sequence"
    if recomputed[seq].hex() != cp["head"]:
        return "chain differs at its sequence"
    return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export")
    parser.add_argument("--checkpoints", action="append", default=[])
    parser.add_argument(
        "--public-key", action="append", default=[], help="raw Ed25519 public key, base64"
    )
    args = parser.parse_args(argv)
    keys = [base64.b64decode(k) for k in args.public_key]
    try:
        with open(args.export, encoding="utf-8") as export:
            events, problems, recomputed = verify_export(export)
        checkpoints = []
        for path in args.checkpoints:
            with open(path, encoding="utf-8") as f:
                checkpoints += [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: unusable input: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    for cp in checkpoints:
        problem = check_checkpoint(cp, recomputed, keys)
        verdict = "holds" if problem is None else f"DOES NOT HOLD: {problem}"
        print(f"checkpoint at {cp['sequence']}: {verdict}")
        if problem is not None:
            problems.append((int(cp["sequence"]), f"checkpoint: {problem}"))
    last = max(recomputed) if recomputed else 0
    print(f"{events} events up to sequence {last}; head {recomputed.get(last, GENESIS).hex()}")
    if not keys and checkpoints:
        print("warning: no --public-key: signatures not checked", file=sys.stderr)
    if not problems:
        print("OK")
        return 0
    position, reason = min(problems)
    print(f"FAILED at position {position}: {reason} ({len(problems)} problem(s))")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
