"""The subject access report as a PDF a person reads: the same content as the JSON export.

Rules this module keeps:

- **Same facts as the JSON.** It renders a :class:`SubjectReport` and nothing else, so the two
  formats never disagree; personal values appear only where the report holds them.
- **No personal data in the document's metadata.** Title, subject, author and keywords name the
  report kind and the tenant (a company, not a person); the subject appears only in the body.
- **Text is text.** Every value is escaped before it reaches reportlab's paragraph markup, so a
  consent text or a note cannot inject markup; the embedded font (Bitstream Vera, shipped with
  reportlab) keeps the text extractable and searchable.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, StyleSheet1, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from projections.api.personal import PersonalData
from projections.reports.model import PurposeConsent, RectificationEntry, SubjectReport

TITLE = "Subject access report"
FONT, BOLD = "Vera", "VeraBd"
WIDTH = A4[0] - 36 * mm
_PERSONAL_STATE = {
    PersonalData.VISIBLE: "shown",
    PersonalData.WITHHELD: "withheld from this requester",
    PersonalData.ERASED: "erased: the subject's key is destroyed, nobody can read them",
}


@cache
def _styles() -> StyleSheet1:
    pdfmetrics.registerFont(TTFont(FONT, "Vera.ttf"))
    pdfmetrics.registerFont(TTFont(BOLD, "VeraBd.ttf"))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=BOLD, italic=FONT, boldItalic=BOLD)
    styles = getSampleStyleSheet()
    for name in ("Title", "Heading2", "Heading3"):
        styles[name].fontName = BOLD
    styles["Normal"].fontName = FONT
    styles.add(ParagraphStyle("Cell", styles["Normal"], fontSize=7.5, leading=9))
    styles.add(ParagraphStyle("Small", styles["Normal"], fontSize=7, leading=9))
    return styles


def _p(value: object, style: str = "Cell") -> Paragraph:
    return Paragraph(escape(_text(value)), _styles()[style])


def _text(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _table(
    header: Sequence[str] | None, rows: Sequence[Sequence[object]], widths: Sequence[float]
) -> Table:
    """A grid of wrapped cells; ``header`` (if any) is shaded and repeated on each page."""
    cells = ([[_p(h) for h in header]] if header else []) + [[_p(v) for v in r] for r in rows]
    table = Table(cells, colWidths=[w * WIDTH for w in widths], repeatRows=1 if header else 0)
    style = [
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#9aa5b1")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde3ea")))
    table.setStyle(TableStyle(style))
    return table


def _section(title: str, *body: Flowable) -> list[Flowable]:
    return [Spacer(1, 4 * mm), Paragraph(escape(title), _styles()["Heading2"]), *body]


def _none(what: str) -> Paragraph:
    return _p(f"No {what}.", "Normal")


def _header(report: SubjectReport) -> list[Flowable]:
    r = report.requester
    rows = [
        ("Tenant (controller)", f"{report.tenant_name} ({report.tenant})"),
        ("Subject id", str(report.subject_id)),
        ("Subject reference", report.subject_ref),
        ("Personal data", _PERSONAL_STATE[report.personal_data]),
        ("Known to the ledger since", report.registered_at),
        ("Generated at", report.generated_at),
        ("Requested by", f"{r.requested_by} ({r.scope}{', key ' + r.key_id if r.key_id else ''})"),
        ("Report id", report.report_id),
    ]
    out: list[Flowable] = [Paragraph(TITLE, _styles()["Title"])]
    out.append(_table(None, rows, (0.3, 0.7)))
    if report.erasure.erased:
        out.append(Spacer(1, 3 * mm))
        out.append(
            _p(
                "This subject is ERASED. The facts below are kept without any personal "
                "value; no one can read the personal data that was recorded.",
                "Normal",
            )
        )
    return out


def _purpose(p: PurposeConsent) -> list[Flowable]:
    state = p.state + (f", version {p.consent_text_version}" if p.consent_text_version else "")
    head = f"{p.purpose} — {state}"
    basis = f"Legal basis {p.legal_basis}" + ("; required" if p.required else "")
    out: list[Flowable] = [
        Paragraph(escape(head), _styles()["Heading3"]),
        _p(f"{p.description or 'No description.'} {basis}.", "Small"),
    ]
    if p.history:
        rows = [
            (
                c.occurred_at,
                c.action,
                c.consent_text_version,
                c.consent_text,
                _corrected(
                    _source(c.source, ip=c.ip_address, browser=c.user_agent, evidence=c.evidence),
                    c.rectifications,
                ),
                c.event_id,
            )
            for c in p.history
        ]
        header = ("When", "Change", "Version", "Consent text", "Source", "Ledger event")
        out.append(_table(header, rows, (0.14, 0.12, 0.09, 0.29, 0.18, 0.18)))
    return out


def _source(source: str, **personal: str | None) -> str:
    return "; ".join([source, *(f"{name} {value}" for name, value in personal.items() if value)])


def _corrected(value: str | None, rectifications: Sequence[RectificationEntry]) -> str | None:
    """The value, and when it was last corrected (art. 16), if it was."""
    if not rectifications:
        return value
    last = rectifications[-1]
    return f"{value or ''} (corrected {_text(last.rectified_at)} by {last.producer})".strip()


def _grid(
    header: Sequence[str], rows: Sequence[Sequence[object]], widths: Sequence[float], what: str
) -> Flowable:
    return _table(header, rows, widths) if rows else _none(what)


def _story(report: SubjectReport) -> list[Flowable]:
    story = _header(report)
    consents: list[Flowable] = [f for p in report.purposes for f in _purpose(p)]
    story += _section("Consents and their history", *(consents or [_none("purposes")]))
    widths = (0.16, 0.14, 0.2, 0.14, 0.16, 0.2)
    rows: list[Sequence[Any]] = [
        (
            c.collected_at,
            c.purpose,
            c.categories,
            c.source,
            c.retained_until,
            _corrected(c.description, c.rectifications),
        )
        for c in report.collections
    ]
    header = ("Collected", "Purpose", "Categories", "Source", "Kept until", "Description")
    story += _section("Personal data collected", _grid(header, rows, widths, "collections"))
    rows = [
        (
            d.disclosed_at,
            d.recipient,
            d.purpose,
            d.categories,
            d.legal_basis,
            _corrected(d.note, d.rectifications),
        )
        for d in report.disclosures
    ]
    header = ("Disclosed", "Recipient", "Purpose", "Categories", "Legal basis", "Note")
    window = f"Disclosures since {_text(report.disclosures_since)}"
    story += _section(window, _grid(header, rows, widths, "disclosures in the last 12 months"))
    return story + _rights(report) + _requests(report) + _erasure(report)


def _requests(report: SubjectReport) -> list[Flowable]:
    rows = [
        (r.received_at, r.kind, r.channel, r.due_at, r.status, r.resolution_event_id)
        for r in report.requests
    ]
    header = ("Received", "Request", "Channel", "Due", "Status", "Answered by")
    widths = (0.16, 0.14, 0.12, 0.16, 0.12, 0.3)
    return _section("Requests", _grid(header, rows, widths, "requests"))


def _rights(report: SubjectReport) -> list[Flowable]:
    """Restriction (art. 18) and objection (art. 21)."""
    restrictions = [
        (r.restricted_at, r.restriction_reference, r.grounds, r.purposes or "every purpose", r.note)
        for r in report.restrictions
    ]
    objections = [
        (
            o.objected_at,
            o.purpose,
            "stands" if o.standing else f"overridden ({o.grounds_reference})",
            o.reason,
            o.reasoning,
        )
        for o in report.objections
    ]
    widths = (0.18, 0.18, 0.2, 0.2, 0.24)
    return _section(
        "Restrictions and objections",
        _grid(
            ("Restricted", "Reference", "Grounds", "Purposes", "Note"),
            restrictions,
            widths,
            "restrictions of processing",
        ),
        _grid(
            ("Objected", "Purpose", "State", "Reason", "Grounds"), objections, widths, "objections"
        ),
    )


def _erasure(report: SubjectReport) -> list[Flowable]:
    e = report.erasure
    state = "erased (key destroyed)" if e.erased else "not erased (key active)"
    holds = [(h.hold_reference, h.placed_at, h.event_id) for h in e.legal_holds]
    requests = [
        (r.requested_at, r.source, r.status, r.refusal_reason, r.due_by, r.event_id)
        for r in e.requests
    ]
    header = ("Requested", "Source", "Status", "Refusal", "Due by", "Ledger event")
    return _section(
        "Erasure",
        _p(f"Status: {state} since {_text(e.key_state_since)}.", "Normal"),
        _grid(("Legal hold", "Placed", "Ledger event"), holds, (0.3, 0.3, 0.4), "legal holds"),
        _grid(header, requests, (0.16, 0.12, 0.12, 0.14, 0.16, 0.3), "erasure requests"),
    )


def render(report: SubjectReport) -> bytes:
    """The report as PDF bytes (A4)."""
    return build(
        _story(report),
        title=TITLE,
        author=report.tenant_name,
        subject="Data subject access report (GDPR art. 15)",
        footer=f"{TITLE} {report.report_id} — {report.tenant_name}",
    )


def build(story: list[Flowable], *, title: str, author: str, subject: str, footer: str) -> bytes:
    """A4 pages with the house margins and a numbered footer; metadata names no person."""
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        title=title,
        author=author,
        subject=subject,
        creator="compliance-ledger",
        keywords="",
    )

    def on_page(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7)
        canvas.drawString(18 * mm, 10 * mm, f"{footer} — page {doc.page}")
        canvas.restoreState()

    document.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buffer.getvalue()
