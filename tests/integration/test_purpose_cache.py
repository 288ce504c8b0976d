"""The purpose check from memory, on a real PostgreSQL: the same answers as the database gives,
and never older than the view — after a view commit, a dropped connection, a rebuild that
corrects the view, a restart, and an erasure the view has not heard of yet."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from ledger.application.service import Ledger, LedgerReader
from ledger.domain.values import LegalBasis
from ledger.process.settings import Settings
from projections.api.app import create_app
from projections.api.purpose_cache import ERASED, Known, PurposeCache
from projections.catalog import live_schema
from projections.rebuild import rebuild
from tests import builders as b
from tests.history import ALICE, BOB, CAROL, DAVE, catch_up, ledger, reader
from tests.integration.test_api import call, check, history, tokens

__all__ = ["history", "ledger", "reader", "tokens"]  # fixtures

REFS = (ALICE, BOB, CAROL, DAVE, "nobody@example.com")
PURPOSES = ("terms", "newsletter", "billing", "no-such-purpose")


def cache_of(client: TestClient) -> PurposeCache:
    found = client.app.state.ctx.checks.cache  # type: ignore[attr-defined]
    assert isinstance(found, PurposeCache)
    return found


def answer(client: TestClient, token: str, ref: str, purpose: str = "newsletter") -> Any:
    found = check(client, token, ref, purpose)
    return found["allowed"], found["reason"]


@pytest.fixture
def api(settings_db_only: Settings, tokens: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings_db_only)) as client:
        yield client


class World(NamedTuple):
    """What a test that changes the ledger under a running API needs."""

    api: TestClient
    ledger: Ledger
    reader: LedgerReader
    settings: Settings
    producer: str  # a producer's API key


@pytest.fixture
def world(
    api: TestClient,
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
    tokens: dict[str, str],
) -> World:
    return World(api, ledger, reader, settings_db_only, tokens["producer"])


def test_memory_gives_the_answers_the_database_gives(
    api: TestClient, settings_db_only: Settings, tokens: dict[str, str]
) -> None:
    producer = tokens["producer"]
    straight = dataclasses.replace(settings_db_only, purpose_cache_subjects=0)
    pairs = [{"subject_ref": r, "purpose": p} for r in REFS for p in PURPOSES]
    with TestClient(create_app(straight)) as database:
        assert database.app.state.ctx.checks.cache is None  # type: ignore[attr-defined]
        expected = [check(database, producer, c["subject_ref"], c["purpose"]) for c in pairs]
    assert {e["reason"] for e in expected} >= {
        "consent_granted",
        "consent_withdrawn",
        "no_consent",
        "legal_basis",
        "subject_erased",
        "unknown_purpose",
    }
    for _ in range(2):  # first read from the database, then from memory
        singles = [check(api, producer, c["subject_ref"], c["purpose"]) for c in pairs]
        batch = call(api, producer, "POST", "/v1/purpose-checks", {"checks": pairs})
        assert singles == expected
        assert batch.status_code == 200 and batch.json()["decisions"] == expected
    cache = cache_of(api)
    assert cache.stats["hits"] > len(pairs)
    scraped = api.get("/metrics").text
    hits = re.search(
        r'^ledger_purpose_check_memory_lookups_total\{outcome="hit"\} (\S+)$', scraped, re.M
    )
    assert hits is not None and float(hits[1]) == cache.stats["hits"]
    assert f"ledger_purpose_check_probes_total {float(cache.stats['probes'])}" in scraped
    assert (b.TENANT, api.app.state.ctx.keys.digest(b.TENANT, DAVE)) in cache.entries  # type: ignore[attr-defined]
    kept = {key[1]: entry for key, entry in cache.entries.items()}
    assert list(kept.values()).count(ERASED) == 1  # Dave; nobody@ is not kept
    assert len(kept) == 3 + 1  # Alice, Bob, Carol (who has no consents), Dave


def test_a_check_after_a_view_commit_sees_it(world: World) -> None:
    api, ledger, reader, settings_db_only, producer = world
    assert answer(api, producer, ALICE) == (True, "consent_granted")
    assert answer(api, producer, ALICE) == (True, "consent_granted")  # from memory
    for _ in range(3):
        ledger.record([b.withdraw(ALICE, "newsletter")])
        catch_up(settings_db_only, reader)  # the view commits; the very next check sees it
        assert answer(api, producer, ALICE) == (False, "consent_withdrawn")
        ledger.record([b.grant(ALICE, "newsletter", "2")])
        catch_up(settings_db_only, reader)
        assert answer(api, producer, ALICE) == (True, "consent_granted")
    assert answer(api, producer, BOB, "analytics") == (False, "unknown_purpose")
    ledger.record([b.define_purpose("analytics", basis=LegalBasis.LEGITIMATE_INTERESTS)])
    catch_up(settings_db_only, reader)  # a catalogue change reaches memory too
    assert answer(api, producer, BOB, "analytics") == (True, "legal_basis")


def test_memory_is_not_stale_after_its_connections_were_cut(
    api: TestClient,
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
    tokens: dict[str, str],
) -> None:
    """Whatever was announced while the server's connections were down, the next check reads
    the view's own position: nothing is learned from notifications."""
    producer = tokens["producer"]
    assert answer(api, producer, ALICE) == (True, "consent_granted")
    with psycopg.connect(settings_db_only.require_database(), autocommit=True) as conn:
        cut = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        ).fetchone()
    assert cut is not None and cut[0] >= 1
    ledger.record([b.withdraw(ALICE, "newsletter")])
    catch_up(settings_db_only, reader)
    assert answer(api, producer, ALICE) == (False, "consent_withdrawn")


def test_a_rebuild_that_corrects_the_view_empties_memory(
    api: TestClient, settings_db_only: Settings, reader: LedgerReader, tokens: dict[str, str]
) -> None:
    """A view damaged behind the ledger's back (no batch, no position) answers wrongly, and
    memory with it; the rebuild that repairs the view repairs memory."""
    producer = tokens["producer"]
    schema = live_schema(settings_db_only, "consent")
    with psycopg.connect(settings_db_only.require_database(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("UPDATE {}.consents SET state = 'withdrawn'").format(sql.Identifier(schema))
        )
    assert answer(api, producer, ALICE) == (False, "consent_withdrawn")
    assert answer(api, producer, ALICE) == (False, "consent_withdrawn")  # kept in memory
    emptied = cache_of(api).stats["emptied"]
    rebuild(settings_db_only, "consent", reader)
    assert answer(api, producer, ALICE) == (True, "consent_granted")
    assert cache_of(api).stats["emptied"] == emptied + 1


def test_an_erasure_refuses_at_once_and_for_good(world: World) -> None:
    api, ledger, reader, settings_db_only, producer = world
    assert answer(api, producer, ALICE, "billing") == (True, "legal_basis")
    assert answer(api, producer, ALICE) == (True, "consent_granted")
    ledger.record([b.erase(ALICE)])  # the ledger's transaction; the view has not applied it
    assert answer(api, producer, ALICE) == (False, "subject_erased")
    assert answer(api, producer, ALICE, "billing") == (False, "subject_erased")
    catch_up(settings_db_only, reader)
    assert answer(api, producer, ALICE) == (False, "subject_erased")
    with TestClient(create_app(settings_db_only)) as restarted:
        assert answer(restarted, producer, ALICE) == (False, "subject_erased")
        assert answer(restarted, producer, BOB) == (False, "consent_withdrawn")


def test_memory_holds_at_most_its_capacity(
    settings_db_only: Settings, tokens: dict[str, str]
) -> None:
    producer = tokens["producer"]
    small = dataclasses.replace(settings_db_only, purpose_cache_subjects=2)
    with TestClient(create_app(small)) as client:
        for ref in (ALICE, BOB, CAROL, ALICE, DAVE):
            answer(client, producer, ref)
        cache = cache_of(client)
        assert len(cache.entries) == 2
        assert len(cache.by_subject) <= 2
        kept = list(cache.entries.values())
        assert kept[-1] is ERASED  # Dave, the last asked; Alice, asked before him, is the other
        assert isinstance(kept[0], Known) and kept[0].subject_id in cache.by_subject
        assert answer(client, producer, BOB) == (False, "consent_withdrawn")  # read again


def test_a_read_behind_memory_answers_but_is_not_kept(
    api: TestClient, tokens: dict[str, str]
) -> None:
    producer = tokens["producer"]
    assert answer(api, producer, BOB) == (False, "consent_withdrawn")
    cache = cache_of(api)
    cache.empty()
    cache.head += 1_000_000  # as if a probe had seen more of the ledger than the next read
    assert answer(api, producer, ALICE) == (True, "consent_granted")
    assert not cache.entries


def test_a_check_of_nothing_memory_holds_is_one_read_without_a_probe(world: World) -> None:
    api, ledger, reader, settings_db_only, producer = world
    cache = cache_of(api)
    assert answer(api, producer, "nobody@example.com", "billing") == (True, "legal_basis")
    assert answer(api, producer, BOB) == (False, "consent_withdrawn")  # now held
    assert cache.stats["probes"] == 0
    ledger.record([b.define_purpose("billing", basis=LegalBasis.CONSENT, version="2")])
    catch_up(settings_db_only, reader)  # the catalogue changed: the read brings it along
    assert answer(api, producer, "nobody@example.com", "billing") == (False, "no_consent")
    assert cache.stats["probes"] == 0
    assert answer(api, producer, BOB, "billing") == (False, "no_consent")  # held: probed
    assert cache.stats["probes"] == 1


def test_restrictions_and_objections_answer_alike_from_memory_and_the_database(
    world: World,
) -> None:
    """Art. 18 and 21 refuse with their own reasons, the same from memory as from the
    database, and a lift or compelling grounds is seen by the very next check."""
    api, ledger, reader, settings, producer = world
    rights = [
        b.define_purpose("analytics", "", text="", basis=LegalBasis.LEGITIMATE_INTERESTS),
        b.define_purpose("offers", "1", direct_marketing=True),
        b.define_purpose(
            "archive",
            "",
            text="",
            basis=LegalBasis.LEGAL_OBLIGATION,
            allowed_under_restriction=True,
        ),
        b.grant(BOB, "offers"),
        b.restrict(ALICE, ["newsletter", "analytics"], "case-1"),
        b.restrict(CAROL, [], "case-2", grounds="LEGAL_CLAIMS"),
        b.object_to(BOB, "analytics"),
        b.object_to(BOB, "offers"),
    ]
    assert {o.status for o in ledger.record(rights)} == {"recorded"}
    catch_up(settings, reader)
    purposes = ("newsletter", "analytics", "offers", "archive", "billing")
    pairs = [{"subject_ref": r, "purpose": p} for r in (ALICE, BOB, CAROL) for p in purposes]
    straight = dataclasses.replace(settings, purpose_cache_subjects=0)

    def from_the_database() -> list[Any]:
        with TestClient(create_app(straight)) as database:
            return [check(database, producer, c["subject_ref"], c["purpose"]) for c in pairs]

    expected = from_the_database()
    reasons = {
        (c["subject_ref"], c["purpose"]): e["reason"] for c, e in zip(pairs, expected, strict=True)
    }
    assert reasons[(ALICE, "newsletter")] == "processing_restricted"
    assert reasons[(ALICE, "offers")] == "no_consent"  # not covered by case-1
    assert reasons[(CAROL, "billing")] == "processing_restricted"  # case-2 covers all
    assert reasons[(CAROL, "archive")] == "legal_basis"  # allowed under restriction
    assert reasons[(BOB, "analytics")] == reasons[(BOB, "offers")] == "objected"
    for _ in range(2):  # first read from the database, then from memory
        assert [check(api, producer, c["subject_ref"], c["purpose"]) for c in pairs] == expected
        batch = call(api, producer, "POST", "/v1/purpose-checks", {"checks": pairs})
        assert batch.json()["decisions"] == expected
    assert cache_of(api).stats["hits"] > 0

    ledger.record([b.lift(ALICE, "case-1"), b.grounds(BOB, "analytics")])
    catch_up(settings, reader)
    assert answer(api, producer, ALICE) == (True, "consent_granted")
    assert answer(api, producer, BOB, "analytics") == (True, "legal_basis")
    assert answer(api, producer, BOB, "offers") == (False, "objected")  # absolute
    assert [check(api, producer, c["subject_ref"], c["purpose"]) for c in pairs] == (
        from_the_database()
    )
