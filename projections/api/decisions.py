"""The purpose check's rule: may this tenant process this subject's data for this purpose now?

In order:

1. A purpose the tenant has not catalogued: **no** (``unknown_purpose``).
2. A reference that belonged to an erased subject: **no** (``subject_erased``). The lookup went
   with the erasure, so the answer carries no subject id and no proof beyond itself: the
   erasure's own events are found by subject id (erasure status), not by reference.
3. A subject whose erasure has been requested but not carried out: **no**
   (``erasure_requested``), whatever the legal basis.
4. A restriction of processing in place that covers the purpose (GDPR art. 18), unless the
   tenant catalogues the purpose as allowed under restriction: **no**
   (``processing_restricted``), proved by the earliest such restriction.
5. An objection to the purpose (art. 21) that stands — no compelling grounds answered it, or
   the purpose is direct marketing, where no grounds do: **no** (``objected``), proved by the
   objection. Answered by grounds, the purpose is decided by the rules below.
6. A purpose catalogued under a legal basis other than consent (contract, legal obligation,
   ...): **yes** (``legal_basis``); the proof is the purpose's definition.
7. Consent purposes: **yes** if the consent is currently granted (``consent_granted``, proved by
   the grant), **no** if withdrawn (``consent_withdrawn``, proved by the withdrawal) or never
   given (``no_consent``) — an unknown reference is simply a subject who never consented.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from projections.api.models import PurposeDecision


def decide(purpose: str, row: Mapping[str, Any] | None) -> PurposeDecision:
    if row is None:
        return PurposeDecision(allowed=False, reason="unknown_purpose", purpose=purpose)
    base = {
        "purpose": purpose,
        "legal_basis": row["legal_basis"],
        "required": row["required"],
        "subject_id": row["subject_id"],
    }
    if row["erased"]:
        return PurposeDecision(purpose=purpose, allowed=False, reason="subject_erased")
    if row["erasure_requested_at"] is not None:
        return PurposeDecision(
            **base,
            allowed=False,
            reason="erasure_requested",
            event_id=row["erasure_event_id"],
            since=row["erasure_requested_at"],
        )
    if row["restriction_event_id"] is not None and not row["allowed_under_restriction"]:
        return PurposeDecision(
            **base,
            allowed=False,
            reason="processing_restricted",
            event_id=row["restriction_event_id"],
            since=row["restricted_at"],
        )
    if row["objection_event_id"] is not None and (
        row["direct_marketing"] or row["grounds_event_id"] is None
    ):
        return PurposeDecision(
            **base,
            allowed=False,
            reason="objected",
            event_id=row["objection_event_id"],
            since=row["objected_at"],
        )
    if row["legal_basis"] != "CONSENT":
        return PurposeDecision(
            **base, allowed=True, reason="legal_basis", event_id=row["purpose_event_id"]
        )
    if row["state"] is None:
        return PurposeDecision(**base, allowed=False, reason="no_consent")
    granted = row["state"] == "granted"
    return PurposeDecision(
        **base,
        allowed=granted,
        reason="consent_granted" if granted else "consent_withdrawn",
        consent_text_version=row["consent_text_version"],
        event_id=row["event_id"],
        since=row["changed_at"],
    )
