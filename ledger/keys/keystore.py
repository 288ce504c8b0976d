"""Subject data keys: created with the subject, stored wrapped, unwrapped on demand.

A subject with no key row is shredded: :meth:`KeyStore.data_keys` leaves it out and every
sealed value of that subject stays unreadable. Plaintext data keys live only in this
process's bounded cache, never in an event, a log line or a Kafka message.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from uuid import UUID

from ledger.domain.values import Sealed
from ledger.keys import crypto
from ledger.storage.store import LedgerStore, WrappedKey


class KeyStore:
    def __init__(
        self,
        store: LedgerStore,
        kek: crypto.KeyEncryptionKey,
        lookup_key: bytes,
        *,
        cache_size: int = 100_000,
    ) -> None:
        self._store = store
        self._kek = kek
        self._lookup_key = lookup_key
        self._cache: OrderedDict[UUID, bytes] = OrderedDict()
        self._cache_size = cache_size

    def digest(self, tenant: str, subject_ref: str) -> bytes:
        return crypto.reference_digest(self._lookup_key, tenant, subject_ref)

    def create(self, subject_id: UUID, tenant: str) -> tuple[bytes, WrappedKey]:
        """A new data key and its wrapped row, to be saved with the subject's first event."""
        data_key = crypto.new_data_key()
        wrapped = self._kek.wrap(data_key, crypto.subject_context(subject_id))
        self._remember(subject_id, data_key)
        return data_key, WrappedKey(subject_id, tenant, self._kek.key_id, wrapped)

    def data_keys(self, subject_ids: Iterable[UUID]) -> dict[UUID, bytes]:
        """Keys of the given subjects; shredded subjects are absent."""
        wanted = list(dict.fromkeys(subject_ids))
        found = {i: self._cache[i] for i in wanted if i in self._cache}
        missing = [i for i in wanted if i not in found]
        if not missing:
            return found
        for subject_id, row in self._store.wrapped_keys(missing).items():
            context = crypto.subject_context(subject_id)
            data_key = self._kek.unwrap(row.wrapped, context, kek_id=row.kek_id)
            self._remember(subject_id, data_key)
            found[subject_id] = data_key
        return found

    def data_key(self, subject_id: UUID) -> bytes | None:
        return self.data_keys([subject_id]).get(subject_id)

    def forget(self, subject_ids: Sequence[UUID]) -> None:
        for subject_id in subject_ids:
            self._cache.pop(subject_id, None)

    def seal(
        self, data_key: bytes, subject_id: UUID, values: dict[str, str | None]
    ) -> dict[str, Sealed | None]:
        return {
            name: None if value is None else crypto.seal(data_key, subject_id, name, value)
            for name, value in values.items()
        }

    def open(self, subject_id: UUID, field: str, sealed: Sealed) -> str | None:
        """The plaintext of a sealed field, or None if the subject's key is shredded."""
        data_key = self.data_key(subject_id)
        if data_key is None:
            return None
        return crypto.open_sealed(data_key, subject_id, field, sealed)

    def _remember(self, subject_id: UUID, data_key: bytes) -> None:
        self._cache[subject_id] = data_key
        self._cache.move_to_end(subject_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
