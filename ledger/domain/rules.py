"""Named rule violations: why the ledger refuses an event.

Each violation has a stable ``code`` (sent as the ``reason`` header on the rejected topic and
counted in metrics) and a ``detail`` for people. Details name tenants, purposes, versions and
event ids — never a personal value.
"""

from __future__ import annotations


class RuleViolation(Exception):
    """Base class: the event is not a valid fact and is not recorded."""

    code = "rule_violation"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnknownTenant(RuleViolation):
    code = "unknown_tenant"


class UnknownPurpose(RuleViolation):
    code = "unknown_purpose"


class UnknownConsentVersion(RuleViolation):
    code = "unknown_consent_version"


class ConsentTextConflict(RuleViolation):
    code = "consent_text_conflict"


class RequiredConsent(RuleViolation):
    code = "required_consent"


class ConsentNotGranted(RuleViolation):
    code = "consent_not_granted"


class NoLegalBasis(RuleViolation):
    """A disclosure names a legal basis the purpose is not catalogued with, or claims consent
    the subject does not hold."""

    code = "no_legal_basis"


class PurposeNotConsentBased(RuleViolation):
    """Consent granted (or withdrawn, with none in force) for a purpose the tenant catalogues
    under a legal basis other than consent (see ``Purpose.check_consent_based``)."""

    code = "purpose_not_consent_based"


class SubjectErased(RuleViolation):
    code = "subject_erased"


class UnknownSubject(RuleViolation):
    code = "unknown_subject"


class LegalHoldUnknown(RuleViolation):
    code = "legal_hold_unknown"


class ErasureStepOutOfOrder(RuleViolation):
    code = "erasure_step_out_of_order"


class InvalidEvent(RuleViolation):
    """Well-formed Avro whose content breaks the contract (empty id, bad code...)."""

    code = "schema_invalid"


class TenantExists(RuleViolation):
    code = "tenant_exists"


class PlaintextPersonalData(RuleViolation):
    """Personal fields arrived in clear on the ingest topic from a tenant that has not
    allowed it (see ``Tenant.check_ingest_policy``)."""

    code = "plaintext_personal_data"


class IngestKeyUnknown(RuleViolation):
    """A field is sealed to an ingest key id the ledger has never issued."""

    code = "ingest_key_unknown"


class IngestKeyDestroyed(RuleViolation):
    """A field is sealed to an ingest key whose private key has been destroyed."""

    code = "ingest_key_destroyed"


class IngestSessionExceeded(RuleViolation):
    """A message sealed in a v2 session beyond the ledger's bounds: its number in the session
    is too high, or the session started too long before the message was sent (or after)."""

    code = "ingest_session_exceeded"


class IngestSealInvalid(RuleViolation):
    """A sealed field does not open: another scheme, tampered, or sealed for another field,
    tenant or event."""

    code = "ingest_seal_invalid"


class RestrictionExists(RuleViolation):
    """A restriction with this reference is already in place for the subject."""

    code = "restriction_exists"


class RestrictionUnknown(RuleViolation):
    """No restriction with this reference is in place for the subject to lift."""

    code = "restriction_unknown"


class ObjectionNotApplicable(RuleViolation):
    """An objection to a purpose that GDPR art. 21 gives no right to object to: one resting
    on consent (withdraw it instead), contract, legal obligation or vital interests, and not
    direct marketing."""

    code = "objection_not_applicable"


class ObjectionExists(RuleViolation):
    """The subject's objection to this purpose already stands (no grounds override it)."""

    code = "objection_exists"


class ObjectionUnknown(RuleViolation):
    """Compelling grounds recorded against an objection the subject has not made."""

    code = "objection_unknown"


class ObjectionAbsolute(RuleViolation):
    """Compelling grounds recorded against an objection to direct marketing, which no
    grounds override (GDPR art. 21(3))."""

    code = "objection_absolute"


class RectificationTargetUnknown(RuleViolation):
    """A correction names an event that is not one of the subject's events holding personal
    fields that can be corrected."""

    code = "rectification_target_unknown"


class FieldNotRectifiable(RuleViolation):
    """A correction names a field the corrected event does not hold as a personal value."""

    code = "field_not_rectifiable"


class RequestUnknown(RuleViolation):
    """A request id the subject has no request under."""

    code = "request_unknown"


class RequestSettled(RuleViolation):
    """The request is already completed or refused: it is settled once."""

    code = "request_settled"


class ExtensionExceeded(RuleViolation):
    """A deadline extended by more than two months in all (GDPR art. 12(3))."""

    code = "extension_exceeded"


class ResolutionMismatch(RuleViolation):
    """A request marked fulfilled by an event that is not the subject's answer of its kind."""

    code = "resolution_mismatch"


class RequestCompletedByErasure(RuleViolation):
    """An erasure request completed by hand: the erasure workflow settles it."""

    code = "request_completed_by_erasure"
