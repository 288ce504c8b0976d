"""Consent receipts and erasure certificates: signed, resting on proven events, verified by
the standalone verifier alone — before and after the subject's key is shredded — and refused
once forged or edited."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pypdfium2 as pdfium
import pytest

from ledger.application.service import Ledger
from ledger.integrity import certificates, documents, proofs, receipts
from ledger.integrity.checkpoints import Checkpoint, CheckpointSigner, new_private_key
from ledger.integrity.documents import DocumentSigner
from ledger.keys.crypto import LocalKek, new_secret
from ledger.keys.ingest_keys import IngestKeyRow
from projections.reports import certificate_pdf
from tests.builders import REF, TENANT, collect, disclose, erase, grant, withdraw
from tests.ledger_cases import ready, subject_id

VERIFIER = Path(__file__).resolve().parents[2] / "tools" / "verify_chain.py"
NOW = "2026-12-04T12:00:00+00:00"


@pytest.fixture
def ledger() -> Ledger:
    made = Ledger(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"},
        kek=LocalKek(new_secret(), "kek-1"),
        lookup_key=new_secret(),
    )
    ready(made)
    return made


@dataclass(frozen=True)
class Keys:
    """The relay's checkpoint key and the API's documents key, as production separates them."""

    log: CheckpointSigner
    docs: DocumentSigner

    @property
    def vkeys(self) -> list[str]:
        return [str(self.log.notes.vkey), str(self.docs.vkey)]


@pytest.fixture
def signer() -> Keys:
    origin = "ledger.example/unit"
    return Keys(
        CheckpointSigner(new_private_key(), origin), DocumentSigner(new_private_key(), origin)
    )


def checkpoint(ledger: Ledger, signer: Keys | CheckpointSigner) -> Checkpoint:
    """A checkpoint of the ledger now, signed as the checkpointer signs one."""
    log = signer.log if isinstance(signer, Keys) else signer
    store = ledger.store
    last = store.max_notification_id() or 0
    head = store.select_chain(last, 1, last)[0].hash
    size = store.grow_tree()
    return log.sign(last, head, datetime.now(UTC), (size, proofs.root(store, size)))


def verify(doc: dict[str, Any], tmp_path: Path, *keys: str) -> tuple[int, str]:
    path = tmp_path / f"doc-{uuid4()}.json"
    path.write_text(json.dumps(doc))
    args = [a for k in keys for a in ("--log-key", k)]
    done = subprocess.run(
        [sys.executable, str(VERIFIER), "--document", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def test_a_receipt_is_the_27560_record_of_a_purpose_and_verifies_offline(
    ledger: Ledger, signer: Keys, tmp_path: Path
) -> None:
    ledger.record([grant(REF, ip_address="203.0.113.9"), collect(REF)])
    ledger.record([withdraw(REF)])
    ledger.record([grant(REF)])
    alice = subject_id(ledger, REF)
    assert alice is not None
    signed = [checkpoint(ledger, signer)]

    receipt = receipts.issue(ledger.store, signer.docs, signed, TENANT, alice, NOW, "newsletter")

    record = receipt["document"]["dpv:hasRecordOfActivity"]
    assert receipt["format"] == "ledger-consent-receipt/v1"
    assert record["dct:conformsTo"] == "https://w3id.org/dpv/schema/dpv-27560#record"
    assert record["dpv:hasDataSubject"]["dct:identifier"] == str(alice)
    assert [s["@type"] for s in record["dpv:hasConsentStatus"]] == [
        "dpv:ConsentGiven",
        "dpv:ConsentWithdrawn",
        "dpv:ConsentGiven",
    ]
    assert record["dpv:hasNotice"][0]["dct:description"] == "Send me the monthly newsletter."
    assert [e["claim"]["event_type"] for e in receipt["evidence"]] == [
        "ConsentGranted",
        "ConsentWithdrawn",
        "ConsentGranted",
    ]
    text = json.dumps(receipt)
    assert REF not in text and "203.0.113.9" not in text  # nothing personal in the clear

    vkeys = signer.vkeys
    code, out = verify(receipt, tmp_path, *vkeys)
    assert code == 0, out

    ledger.record([erase(REF)])  # the subject's key is shredded
    assert ledger.store.wrapped_keys([alice]) == {}
    code, out = verify(receipt, tmp_path, *vkeys)
    assert code == 0, out  # the subject's own copy still verifies


def test_a_forged_or_edited_receipt_fails(ledger: Ledger, signer: Keys, tmp_path: Path) -> None:
    ledger.record([grant(REF)])
    ledger.record([withdraw(REF)])
    alice = subject_id(ledger, REF)
    assert alice is not None
    receipt = receipts.issue(
        ledger.store, signer.docs, [checkpoint(ledger, signer)], TENANT, alice, NOW, "newsletter"
    )
    vkeys = signer.vkeys

    edited = json.loads(json.dumps(receipt))
    edited["document"]["dpv:hasRecordOfActivity"]["dpv:hasConsentStatus"].pop()  # hide it
    assert verify(edited, tmp_path, *vkeys)[0] == 1

    forger = DocumentSigner(new_private_key(), "ledger.example/unit")
    forged = documents.sign(
        forger,
        receipt["format"],
        edited["document"],
        receipt["evidence"],
        checkpoint(ledger, signer),
    )
    code, out = verify(forged, tmp_path, *vkeys)
    assert code == 1 and "trusted log key" in out

    swapped = json.loads(json.dumps(receipt))
    evidence = swapped["evidence"][1]
    state = json.loads(base64.b64decode(evidence["event"]["state"]))
    state["purpose"] = "billing"
    evidence["event"]["state"] = base64.b64encode(json.dumps(state).encode()).decode()
    evidence["claim"]["purpose"] = "billing"
    assert verify(swapped, tmp_path, *vkeys)[0] == 1


def test_the_portability_export_holds_every_purpose_answered(ledger: Ledger, signer: Keys) -> None:
    ledger.record([grant(REF), grant(REF, purpose="terms")])
    alice = subject_id(ledger, REF)
    assert alice is not None
    export = receipts.issue(
        ledger.store, signer.docs, [checkpoint(ledger, signer)], TENANT, alice, NOW
    )
    records = export["document"]["dpv:hasRecordOfActivity"]
    purposes = [r["dpv:hasProcess"]["dpv:hasPurpose"]["dct:identifier"] for r in records]
    assert purposes == ["newsletter", "terms"]


def test_documents_wait_for_a_signed_tree_and_refuse_another_tenant(
    ledger: Ledger, signer: Keys
) -> None:
    ledger.record([grant(REF)])
    alice = subject_id(ledger, REF)
    assert alice is not None
    signed = [checkpoint(ledger, signer)]
    ledger.record([withdraw(REF)])
    with pytest.raises(documents.NotYetCheckpointed):
        receipts.issue(ledger.store, signer.docs, signed, TENANT, alice, NOW, "newsletter")
    with pytest.raises(documents.NoSuchSubject):
        receipts.issue(ledger.store, signer.docs, signed, "other", alice, NOW, "newsletter")
    with pytest.raises(receipts.NoConsent):
        receipts.issue(ledger.store, signer.docs, signed, TENANT, alice, NOW, "billing")


def test_an_erasure_certificate_names_every_copy_and_verifies_offline(
    ledger: Ledger, signer: Keys, tmp_path: Path
) -> None:
    ledger.record([grant(REF), disclose(REF)])
    alice = subject_id(ledger, REF)
    assert alice is not None
    with pytest.raises(certificates.NotCompleted):
        certificates.issue(ledger.store, signer.docs, [], TENANT, alice, [], timedelta(days=7))
    ledger.record([erase(REF)])
    deliveries: list[dict[str, object]] = [
        {
            "recipient": "mailer-inc",
            "delivery_id": "d1",
            "status": "delivered",
            "attempts": 2,
            "last_status_code": 204,
        },
    ]
    ledger.record_notification(alice, deliveries, datetime.now(UTC))
    old = datetime.now(UTC) - timedelta(days=30)
    keys = [
        IngestKeyRow(
            "ik-old", "x", b"", "kek-1", None, old, old + timedelta(days=1), old + timedelta(days=8)
        ),
        IngestKeyRow("ik-now", "x", b"", "kek-1", b"w", old + timedelta(days=1)),
    ]

    made = certificates.issue(
        ledger.store,
        signer.docs,
        [checkpoint(ledger, signer)],
        TENANT,
        alice,
        keys,
        timedelta(days=7),
    )

    body = made["document"]
    copies = {c["copy"]: c for c in body["copies"]}
    assert list(copies) == [
        "event_store",
        "ledger_topic",
        "projections",
        "backups",
        "ingest_topic",
        "recipients",
    ]
    assert copies["event_store"]["at"] == body["shredded_at"]
    assert copies["recipients"]["recipients"][0]["recipient"] == "mailer-inc"
    assert copies["recipients"]["recipients"][0]["deliveries"][0]["status"] == "delivered"
    ingest = copies["ingest_topic"]
    assert [k["state"] for k in ingest["ingest_keys"]] == ["destroyed", "current"]
    assert ingest["at"] is None  # a key still in use: no date yet, and the rule says when
    assert [e["claim"]["event_type"] for e in made["evidence"]] == list(certificates.STEPS)
    assert REF not in json.dumps(made)

    vkeys = signer.vkeys
    code, out = verify(made, tmp_path, *vkeys)
    assert code == 0, out
    pdf = pdfium.PdfDocument(certificate_pdf.render(made))
    text = " ".join(page.get_textpage().get_text_range() for page in pdf)
    for shown in ("Erasure certificate", "mailer-inc", str(alice), certificate_pdf.digest(made)):
        assert shown in " ".join(text.split()), shown
    assert REF not in text
    edited = json.loads(json.dumps(made))
    edited["document"]["copies"][5]["recipients"][0]["deliveries"][0]["status"] = "failed"
    assert verify(edited, tmp_path, *vkeys)[0] == 1
