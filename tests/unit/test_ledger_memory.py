"""The storage contract cases against the in-memory recorder."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.application import Ledger
from ledger.crypto import LocalKek, new_secret
from tests.ledger_cases import LedgerCases, OpenLedger

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


class TestInMemoryLedger(LedgerCases):
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
