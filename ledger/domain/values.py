"""Value types shared by the aggregates. No I/O, no crypto library."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class LegalBasis(Enum):
    """The lawful bases of GDPR art. 6(1); values match the Avro enum symbols."""

    CONSENT = "CONSENT"
    CONTRACT = "CONTRACT"
    LEGAL_OBLIGATION = "LEGAL_OBLIGATION"
    VITAL_INTERESTS = "VITAL_INTERESTS"
    PUBLIC_TASK = "PUBLIC_TASK"
    LEGITIMATE_INTERESTS = "LEGITIMATE_INTERESTS"


@dataclass(frozen=True)
class Sealed:
    """A personal value encrypted under a key the domain never sees.

    Domain events hold personal fields only in this form, so no plaintext personal data is
    ever in an event, in memory or at rest.
    """

    scheme: str
    key_id: str
    nonce: bytes
    ciphertext: bytes


TENANT_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PURPOSE_CODE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
