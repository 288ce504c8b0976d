"""The storage contract cases against the in-memory recorder."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.application.service import Ledger
from ledger.keys.crypto import LocalKek, new_secret
from tests.builders import TENANT, define_purpose, grant, withdraw
from tests.chain_cases import ChainCases
from tests.erasure_cases import ErasureCases
from tests.ledger_cases import LedgerCases, OpenLedger
from tests.merkle_cases import MerkleCases
from tests.rights_cases import RightsCases

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


class TestInMemoryLedger(LedgerCases, ErasureCases, RightsCases, ChainCases, MerkleCases):
    @pytest.fixture
    def keys(self) -> dict[str, Any]:
        return {"kek": LocalKek(new_secret(), "kek-1"), "lookup_key": new_secret()}

    @pytest.fixture
    def ledger(self, keys: dict[str, Any]) -> Ledger:
        return Ledger(POPO, **keys)

    @pytest.fixture
    def open_same_store(self, ledger: Ledger, keys: dict[str, Any]) -> OpenLedger:
        class OnTheSameStore(Ledger):
            def construct_recorder(self) -> Any:
                return ledger.store

        return lambda: OnTheSameStore(POPO, **keys)

    @pytest.fixture
    def open_other_store(self, keys: dict[str, Any]) -> OpenLedger:
        return lambda: Ledger(POPO, **keys)


def test_a_batch_of_known_subjects_reads_their_keys_in_one_lookup() -> None:
    kek, lookup_key = LocalKek(new_secret(), "kek-1"), new_secret()
    writer = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, kek=kek, lookup_key=lookup_key)
    writer.register_tenant(TENANT, "Acme")
    writer.record([define_purpose()])
    refs = [f"user-{i}@example.com" for i in range(20)]
    writer.record([grant(ref) for ref in refs])
    writer._subjects.clear()  # as after a restart: nothing cached
    writer.keys._cache.clear()
    lookups: list[int] = []
    original = writer.store.wrapped_keys

    def counting(ids: Any) -> Any:
        lookups.append(len(ids))
        return original(ids)

    writer.store.wrapped_keys = counting  # type: ignore[method-assign]
    outcomes = writer.record([withdraw(ref) for ref in refs])
    assert [o.status for o in outcomes] == ["recorded"] * len(refs)
    assert lookups == [len(refs)]
