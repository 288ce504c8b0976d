"""A data key shredded by one process leaves the memory of another that had it cached."""

from __future__ import annotations

from contextlib import closing

from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings
from tests import builders as b


def test_a_key_shredded_by_another_process_leaves_this_ones_cache(
    settings_db_only: Settings,
) -> None:
    with (
        closing(open_ledger(settings_db_only)) as ingest,
        closing(open_ledger(settings_db_only)) as api,
    ):
        ingest.register_tenant(b.TENANT, "Acme")
        ingest.record([b.define_purpose(), b.grant(b.REF), b.grant("bob@example.org")])
        alice = ingest.find_subject(b.TENANT, b.REF)
        assert alice is not None
        assert ingest.keys.data_key(alice.id) is not None  # cached in the ingest process
        assert alice.id in set(ingest.keys._cache)

        assert [o.status for o in api.record([b.erase(b.REF)])] == ["recorded"]
        assert api.keys.data_key(alice.id) is None  # shredded in the database

        assert ingest.forget_shredded_elsewhere() == 1
        assert alice.id not in set(ingest.keys._cache)
        assert ingest.forget_shredded_elsewhere() == 0  # each shred is seen once

        bob = ingest.find_subject(b.TENANT, "bob@example.org")
        assert bob is not None and bob.id in set(ingest.keys._cache)
        api.record([b.erase("bob@example.org")])
        outcomes = ingest.record([b.grant("carol@example.net")])  # any batch checks first
        assert [o.status for o in outcomes] == ["recorded"]
        assert bob.id not in set(ingest.keys._cache)
