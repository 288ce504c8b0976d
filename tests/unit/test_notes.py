"""C2SP signed notes and verifier keys (``ledger.integrity.notes``) against the spec's own
example, and the edges an implementation gets wrong."""

from __future__ import annotations

import pytest

from ledger.integrity.checkpoints import CheckpointSigner, new_private_key
from ledger.integrity.notes import (
    COSIGNATURE,
    Note,
    NoteError,
    TreeHead,
    VerifierKey,
    cosign,
    verify_checkpoint,
)
from ledger.process.settings import load

# c2sp.org/signed-note's example
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONnc"
    "AlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def test_the_specs_example_verifies_and_its_vkey_round_trips():
    key = VerifierKey.parse(SPEC_VKEY)
    assert str(key) == SPEC_VKEY
    assert Note.parse(SPEC_NOTE).verified_by([key]) == [key]


def test_a_vkey_whose_base64_holds_a_plus_parses():
    signer = next(
        s
        for s in (CheckpointSigner(new_private_key(), "ledger.example/p") for _ in range(500))
        if "+" in str(s.notes.vkey).split("+", 2)[2]
    )
    text = str(signer.notes.vkey)
    assert VerifierKey.parse(text) == signer.notes.vkey
    witness = VerifierKey(signer.notes.vkey.name + "-w", COSIGNATURE, signer.notes.vkey.public_key)
    settings = load(
        {"LEDGER_WITNESSES": f"{witness} https://w.example", "LEDGER_WITNESS_QUORUM": "1"}
    )
    assert settings.witnesses == ((str(witness), "https://w.example"),)


def test_a_known_key_whose_signature_fails_rejects_the_note_and_unknown_keys_are_ignored():
    signer = CheckpointSigner(new_private_key(), "ledger.example/n")
    note = signer.notes.sign(TreeHead("ledger.example/n", 3, bytes(32)))
    stranger = cosign(new_private_key(), "w.example", note, 1_700_000_000)
    with_stranger = note.with_signatures((stranger,))
    assert verify_checkpoint(with_stranger.text, [signer.notes.vkey]).head.size == 3
    forged = with_stranger.text.replace("\n3\n", "\n4\n")
    with pytest.raises(NoteError, match="does not verify"):
        verify_checkpoint(forged, [signer.notes.vkey])
    with pytest.raises(NoteError, match="no known key"):
        verify_checkpoint(
            note.text, [CheckpointSigner(new_private_key(), "ledger.example/n").notes.vkey]
        )


@pytest.mark.parametrize(
    "body",
    [b"origin\n3\n", b"origin\n03\nAAAA\n", b"origin with space\n1\n" + b"A" * 44 + b"\n"],
)
def test_a_checkpoint_body_is_exactly_three_well_formed_lines(body: bytes):
    with pytest.raises(NoteError):
        TreeHead.parse(body)
