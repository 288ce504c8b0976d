"""The erasure certificate as a PDF a person reads: the signed JSON's content, and how to
verify it.

Rules this module keeps:

- **The JSON is the certificate; the PDF shows it.** Every value here comes from the signed
  document, and the PDF prints the SHA-256 of the document's signed bytes, so a reader can tie
  a printout to the JSON that ``tools/verify_chain.py --document`` verifies.
- **Nothing personal**, as in the JSON: the subject appears by its pseudonymous id only.
"""

from __future__ import annotations

import hashlib
from typing import Any

from reportlab.platypus import Flowable, Paragraph

from ledger.integrity.documents import SIGNED_PREFIX, canonical
from projections.reports.pdf import _p, _section, _styles, _table, build  # the report's layout

TITLE = "Erasure certificate"


def digest(document: dict[str, Any]) -> str:
    """SHA-256 of the bytes the document's signature covers, hex."""
    body = {k: v for k, v in document.items() if k != "signature"}
    return hashlib.sha256(SIGNED_PREFIX + canonical(body)).hexdigest()


def _key(key: dict[str, Any]) -> str:
    when = key["unreadable_from"] or "one retention after its rotation"
    return f"{key['key_id']} ({key['state']}, unreadable from {when})"


def _story(signed: dict[str, Any]) -> list[Flowable]:
    body = signed["document"]
    copies = body["copies"]
    head = [
        ("Tenant (controller)", body["tenant"]),
        ("Subject id (pseudonymous)", body["subject_id"]),
        ("Erasure request", body["request"]["event_id"]),
        ("Requested", body["request"]["requested_at"]),
        ("Keys shredded", body["shredded_at"]),
        ("Completed", body["completed_at"]),
    ]
    story: list[Flowable] = [
        Paragraph(TITLE, _styles()["Title"]),
        _table(None, head, (0.3, 0.7)),
        *_section(
            "Every copy, and what made it unreadable",
            _table(
                ("Copy", "What it held", "Made unreadable by", "When"),
                [(c["copy"], c["held"], c["made_unreadable_by"], c.get("at")) for c in copies],
                (0.14, 0.3, 0.4, 0.16),
            ),
        ),
    ]
    recipients = next(c for c in copies if c["copy"] == "recipients")["recipients"]
    rows = [
        (r["recipient"], len(r["disclosures"]), d["status"], d["attempts"], d["last_status_code"])
        for r in recipients
        for d in (r["deliveries"] or [{"status": "—", "attempts": 0, "last_status_code": None}])
    ]
    story += _section(
        "Recipients told",
        _table(
            ("Recipient", "Disclosures", "Notice", "Attempts", "Last HTTP status"),
            rows,
            (0.3, 0.15, 0.2, 0.15, 0.2),
        )
        if rows
        else _p("The subject's data was disclosed to no one.", "Normal"),
    )
    ingest = next(c for c in copies if c["copy"] == "ingest_topic")
    story += _section(
        "Ingest topic",
        _p(
            f"Messages expire by {ingest['messages_expire_by']} (retention {ingest['retention']})."
            " Ingest keys: " + ", ".join(_key(k) for k in ingest["ingest_keys"]),
            "Normal",
        ),
    )
    story += _section(
        "Ledger events this certificate rests on",
        _table(
            ("Sequence", "Event", "Recorded", "Leaf"),
            [
                (
                    e["claim"]["sequence"],
                    e["claim"]["event_type"],
                    e["claim"]["recorded_at"],
                    e["leaf_index"],
                )
                for e in signed["evidence"]
            ],
            (0.15, 0.3, 0.4, 0.15),
        ),
    )
    note = signed["checkpoint"].split("\n")
    story += _section(
        "How to verify",
        _p(
            f"Signed by {signed['signature']['key']}. Signed document SHA-256: "
            f"{digest(signed)}. Checkpoint: {note[0]}, tree size {note[1]}, root {note[2]}. "
            "Every event above is proven to be in that tree. Verify the JSON certificate "
            "offline: python tools/verify_chain.py --document CERTIFICATE.json --log-key VKEY "
            "(docs/audit.md).",
            "Normal",
        ),
    )
    return story


def render(signed: dict[str, Any]) -> bytes:
    """The certificate as PDF bytes (A4); its metadata names the tenant, not the subject."""
    return build(
        _story(signed),
        title=TITLE,
        author=signed["document"]["tenant"],
        subject="Erasure certificate (GDPR art. 17)",
        footer=f"{TITLE} {digest(signed)[:16]}",
    )
