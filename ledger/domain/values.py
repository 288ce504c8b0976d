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

    def to_bytes(self) -> bytes:
        """A compact form for a view's ``bytea`` column: each part length-prefixed."""
        parts = (self.scheme.encode(), self.key_id.encode(), self.nonce, self.ciphertext)
        return b"".join(len(p).to_bytes(4, "big") + p for p in parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> Sealed:
        parts: list[bytes] = []
        offset = 0
        for _ in range(4):
            size = int.from_bytes(data[offset : offset + 4], "big")
            parts.append(bytes(data[offset + 4 : offset + 4 + size]))
            offset += 4 + size
        if offset != len(data) or len(parts[2]) == 0:
            raise ValueError("not a sealed value")
        return cls(parts[0].decode(), parts[1].decode(), parts[2], parts[3])


TENANT_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PURPOSE_CODE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
