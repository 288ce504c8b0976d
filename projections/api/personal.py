"""Personal fields in responses: opened with the subject's key, for scopes that may see them.

- A key is unwrapped per request from the row the query returned; the API keeps no data key
  in memory between requests, so a shredded subject reads as erased from the next request on.
- ``visible``: the caller may see personal data and the subject's key exists;
  ``withheld``: the caller's scopes do not allow it (values are null);
  ``erased``: the subject's key is shredded, nobody can open the values (values are null).
- Upstream references arrive in request bodies, never in URLs, so they stay out of access logs;
  they are looked up by their HMAC digest only.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel

from ledger.domain.values import Sealed
from ledger.keys import crypto

M = TypeVar("M", bound=BaseModel)


class PersonalData(StrEnum):
    VISIBLE = "visible"
    WITHHELD = "withheld"
    ERASED = "erased"


class SubjectKeys:
    """The ledger's KEK ring and lookup key, as the query API uses them."""

    def __init__(self, kek: crypto.KeyEncryptionKey, lookup_key: bytes) -> None:
        self._kek = kek
        self._lookup_key = lookup_key

    def digest(self, tenant: str, subject_ref: str) -> bytes:
        return crypto.reference_digest(self._lookup_key, tenant, subject_ref)

    def opener(
        self, subject_id: UUID, wrapped: bytes | None, allowed: bool, kek_id: str | None = None
    ) -> Opener:
        """``kek_id`` is the KEK version stored with the wrapped key (the current one if None)."""
        if wrapped is None:
            return Opener(subject_id, None, PersonalData.ERASED)
        if not allowed:
            return Opener(subject_id, None, PersonalData.WITHHELD)
        context = crypto.subject_context(subject_id)
        data_key = self._kek.unwrap(bytes(wrapped), context, kek_id=kek_id)
        return Opener(subject_id, data_key, PersonalData.VISIBLE)


class Opener:
    """Opens one subject's sealed columns, or returns None where it may not."""

    def __init__(self, subject_id: UUID, data_key: bytes | None, state: PersonalData) -> None:
        self.subject_id = subject_id
        self._data_key = data_key
        self.state = state

    def model(self, cls: type[M], row: Mapping[str, Any], *personal: str, **more: Any) -> M:
        """``cls`` from a view row: each of its fields the row holds, the ``personal`` ones
        opened (None where they may not be), and ``more`` (values the row does not hold)."""
        fields = {k: row[k] for k in cls.model_fields if k in row and k not in personal}
        opened = {f: self.open(f, row[f]) for f in personal}
        return cls(**fields, **opened, **more)

    def open(self, field: str, stored: bytes | None) -> str | None:
        if stored is None or self._data_key is None:
            return None
        sealed = Sealed.from_bytes(bytes(stored))
        return crypto.open_sealed(self._data_key, self.subject_id, field, sealed)
