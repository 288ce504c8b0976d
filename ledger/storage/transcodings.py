"""How the ledger's value types are stored in `eventsourcing`'s JSON event state."""

from __future__ import annotations

import base64
from typing import Any

from eventsourcing.persistence import Transcoding

from ledger.domain.values import LegalBasis, Sealed


class SealedAsDict(Transcoding):
    type = Sealed
    name = "sealed"

    def encode(self, obj: Sealed) -> dict[str, str]:
        return {
            "s": obj.scheme,
            "k": obj.key_id,
            "n": base64.b64encode(obj.nonce).decode(),
            "c": base64.b64encode(obj.ciphertext).decode(),
        }

    def decode(self, data: Any) -> Sealed:
        return Sealed(
            data["s"], data["k"], base64.b64decode(data["n"]), base64.b64decode(data["c"])
        )


class LegalBasisAsName(Transcoding):
    type = LegalBasis
    name = "legal_basis"

    def encode(self, obj: LegalBasis) -> str:
        return obj.value

    def decode(self, data: Any) -> LegalBasis:
        return LegalBasis(data)
