"""``ledger audit verify|export|checkpoint|key``: the auditor's commands (``docs/audit.md``).

``verify`` exits 0 when the chain verifies and every checkpoint holds, 1 when not (the first
bad position and its reason are printed), 2 when it cannot run.
"""

from __future__ import annotations

import base64
import json
from contextlib import closing
from pathlib import Path
from typing import Annotated

import psycopg
import typer

from ledger.cli.common import DATABASE_DOWN, fail, settings
from ledger.integrity import audit as audit_run
from ledger.integrity import witnesses
from ledger.integrity.audit import WitnessPolicy
from ledger.integrity.checkpoint_store import ChainBroken, CheckpointTable, make_checkpoint
from ledger.integrity.checkpoints import Checkpoint, CheckpointSigner, new_private_key
from ledger.integrity.documents import signer_of
from ledger.integrity.notes import NoteError, VerifierKey
from ledger.integrity.sources import export_line, store_items
from ledger.integrity.witnesses import Witnessing
from ledger.process.runtime import open_reader
from ledger.process.settings import ConfigError, Settings

audit = typer.Typer(help="Verify the hash chain and signed checkpoints.", no_args_is_help=True)

CheckpointFiles = Annotated[
    list[Path] | None,
    typer.Option("--checkpoint", help="A checkpoint (JSON) held by the auditor; repeatable."),
]
PublicKey = Annotated[
    list[str] | None,
    typer.Option(
        "--public-key",
        help="A published checkpoint key (base64); repeatable, e.g. the keys from before a "
        "rotation. Default: the configured one.",
    ),
]


def _public_keys(s: Settings, given: list[str] | None) -> list[bytes] | None:
    """The keys checkpoints must verify under: those given, else the configured one; None if
    neither (signatures are then not checked, and the command says so)."""
    if given:
        try:
            return [base64.b64decode(k, validate=True) for k in given]
        except ValueError:
            fail("--public-key must be base64")
    if s.checkpoint_key is not None:
        return [CheckpointSigner(s.checkpoint_key, s.log_origin).public_key]
    return None


def _read_checkpoints(paths: list[Path] | None) -> list[Checkpoint]:
    out = []
    for path in paths or []:
        try:
            out.append(Checkpoint.from_json(json.loads(path.read_text())))
        except (OSError, ValueError, KeyError) as exc:
            fail(f"{path} is not a checkpoint: {type(exc).__name__}: {exc}")
    return out


WitnessKeys = Annotated[
    list[str] | None,
    typer.Option(
        "--witness",
        help="A witness's verifier key (C2SP vkey, type 0x04); repeatable. Default: the keys "
        "in LEDGER_WITNESSES.",
    ),
]
Quorum = Annotated[
    int | None,
    typer.Option(
        "--quorum",
        min=0,
        help="Witness cosignatures each checkpoint must carry. Default: LEDGER_WITNESS_QUORUM.",
    ),
]


def witness_policy(s: Settings, given: list[str] | None, quorum: int | None) -> WitnessPolicy:
    try:
        keys = (
            [VerifierKey.parse(k) for k in given]
            if given
            else [w.key for w in witnesses.parse(s.witnesses)]
        )
    except NoteError as exc:
        fail(f"--witness: {exc}")
    wanted = s.witness_quorum if quorum is None else quorum
    if wanted > len(keys):
        fail(f"--quorum {wanted} is more than the {len(keys)} witness keys known")
    return WitnessPolicy(keys, wanted)


@audit.command("verify")
def verify_command(
    checkpoint: CheckpointFiles = None,
    public_key: PublicKey = None,
    topic: Annotated[
        bool, typer.Option("--topic", help="Verify a dump of the Kafka ledger topic instead.")
    ] = False,
    witness: WitnessKeys = None,
    quorum: Quorum = None,
) -> None:
    """Verify the whole chain, the Merkle log and every checkpoint; print the first bad
    position."""
    s = settings()
    key = _public_keys(s, public_key)
    held = _read_checkpoints(checkpoint)
    policy = witness_policy(s, witness, quorum)
    try:
        source = _verify_topic if topic else _verify_store
        result = source(s, held, key, policy)
    except ConfigError as exc:
        fail(str(exc))
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")
    if key is None:
        typer.secho("warning: no public key: signatures not checked", fg="yellow", err=True)
    for line in result.lines():
        typer.echo(line)
    raise typer.Exit(0 if result.ok else 1)


def _verify_store(
    s: Settings, held: list[Checkpoint], key: list[bytes] | None, policy: WitnessPolicy
) -> audit_run.Audit:
    with closing(open_reader(s)) as reader:
        with psycopg.connect(s.require_database(), autocommit=True) as conn:
            stored = CheckpointTable(conn, s.database_schema).all()
        result = audit_run.run(
            "event store", store_items(reader.store), [*stored, *held], key, witnesses=policy
        )
        result.extra += audit_run.stored_tree_problems(reader.store, result.report)
        return result


def _verify_topic(
    s: Settings, held: list[Checkpoint], key: list[bytes] | None, policy: WitnessPolicy
) -> audit_run.Audit:
    from ledger.integrity.topic import read_topic  # Kafka only when asked for

    dump = read_topic(s.require_kafka(), s.topics.ledger, s.topics.checkpoints)
    checkpoints = [*dump.checkpoints, *held]
    return audit_run.run(f"topic {s.topics.ledger}", dump.items, checkpoints, key, witnesses=policy)


@audit.command("export")
def export_command(
    path: Annotated[Path, typer.Argument(help="File to write (JSON lines).")],
) -> None:
    """Write every event's stored columns and chain link, and the checkpoints, for
    ``tools/verify_chain.py`` or an auditor's own verifier."""
    s = settings()
    with closing(open_reader(s)) as reader, path.open("w") as out:
        count = 0
        for item in store_items(reader.store):
            out.write(export_line(item) + "\n")
            count += 1
    with psycopg.connect(s.require_database(), autocommit=True) as conn:
        stored = CheckpointTable(conn, s.database_schema).all()
    sidecar = path.with_suffix(path.suffix + ".checkpoints")
    sidecar.write_text("".join(json.dumps(c.to_json()) + "\n" for c in reversed(stored)))
    typer.echo(f"wrote {count} positions to {path} and {len(stored)} checkpoints to {sidecar}")


@audit.command("checkpoint")
def checkpoint_command() -> None:
    """Sign a checkpoint at the chain's head now (the relay also does so periodically)."""
    s = settings()
    if s.checkpoint_key is None:
        fail("no checkpoint key: set LEDGER_CHECKPOINT_KEY (`ledger audit keygen` prints one)")
    signer = CheckpointSigner(s.checkpoint_key, s.log_origin)
    with closing(open_reader(s)) as reader:
        head = reader.store.max_notification_id() or 0
        with psycopg.connect(s.require_database(), autocommit=True) as conn:
            table = CheckpointTable(conn, s.database_schema)
            try:
                made = make_checkpoint(reader.store, table, signer, head)
            except ChainBroken as exc:
                fail(f"the chain does not verify, no checkpoint signed: {exc}", code=1)
            if made is not None and s.witnesses:
                made = Witnessing(witnesses.parse(s.witnesses)).cosign(reader.store, table, made)
    typer.echo(json.dumps(made.to_json()) if made else "no new events since the last checkpoint")


@audit.command("key")
def key_command(
    vkey: Annotated[
        bool,
        typer.Option("--vkey", help="Print the C2SP verifier key of the log's checkpoints."),
    ] = False,
    documents: Annotated[
        bool,
        typer.Option("--documents", help="Print the verifier key receipts are signed with."),
    ] = False,
) -> None:
    """Print the public checkpoint key (base64) and its key id: what auditors verify with."""
    s = settings()
    if documents:
        signer_key = signer_of(s.document_key, s.checkpoint_key, s.log_origin)
        if signer_key is None:
            fail("no documents key configured (LEDGER_DOCUMENT_KEY)")
        typer.echo(str(signer_key.vkey))
        return
    if s.checkpoint_key is None:
        fail("no checkpoint key configured (LEDGER_CHECKPOINT_KEY)")
    signer = CheckpointSigner(s.checkpoint_key, s.log_origin)
    if vkey:
        typer.echo(str(signer.notes.vkey))
        return
    typer.echo(f"{base64.b64encode(signer.public_key).decode()} {signer.key_id}")


@audit.command("keygen")
def keygen_command() -> None:
    """Print a new checkpoint signing key as an environment assignment."""
    typer.echo(f"LEDGER_CHECKPOINT_KEY={base64.b64encode(new_private_key()).decode()}")


def register(app: typer.Typer) -> None:
    app.add_typer(audit, name="audit")
