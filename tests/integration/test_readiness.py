"""``/readyz`` on a real PostgreSQL: not ready while a projection is rebuilt or the server
stops, ready again after."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ledger.application.service import Ledger, LedgerReader
from ledger.process.settings import Settings
from projections.api.app import create_app, prepare
from projections.rebuild import rebuild
from tests.history import catch_up, ledger, reader, scripted_history

__all__ = ["ledger", "reader"]  # fixtures


@pytest.fixture
def api(ledger: Ledger, reader: LedgerReader, settings_db_only: Settings) -> Iterator[TestClient]:
    scripted_history(ledger)
    catch_up(settings_db_only, reader)
    prepare(settings_db_only)
    with TestClient(create_app(settings_db_only), raise_server_exceptions=False) as client:
        yield client


def readiness(api: TestClient) -> tuple[int, dict[str, Any]]:
    response = api.get("/readyz")
    return response.status_code, response.json()


def test_a_rebuild_in_progress_makes_the_api_unready(
    api: TestClient, reader: LedgerReader, settings_db_only: Settings
) -> None:
    assert readiness(api)[0] == 200
    during: list[tuple[int, dict[str, Any]]] = []

    def asked_during_the_rebuild(position: int, head: int) -> None:
        if not during:  # the first batch: the rebuild schema is being filled
            during.append(readiness(api))

    rebuild(
        settings_db_only.with_overrides(projection_batch_size=5),
        "consent",
        reader,
        on_progress=asked_during_the_rebuild,
    )

    status, body = during[0]
    assert (status, body["ready"], body["stopping"]) == (503, False, False)
    flags = {p["name"]: p["rebuilding"] for p in body["projections"]}
    assert flags == {"consent": True, "records": False, "erasure": False}
    assert all(p["lag"] == 0 for p in body["projections"])  # the live views are current
    status, body = readiness(api)
    assert (status, body["ready"]) == (200, True)
    assert not any(p["rebuilding"] for p in body["projections"])


def test_a_stopping_server_is_unready_but_still_answers(api: TestClient) -> None:
    assert readiness(api)[0] == 200
    api.app.state.stopping = True  # type: ignore[attr-defined]  # as `ledger serve` sets it
    status, body = readiness(api)
    assert (status, body["ready"], body["stopping"]) == (503, False, True)
    assert api.get("/healthz").status_code == 200
