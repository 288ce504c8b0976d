"""The console's dashboard, request register and erasures, and the API routes behind them, over
a scripted history on a real PostgreSQL: scopes, tenant isolation, figures that match the
history, the consent-day table a rebuild fills alike, and pages with nothing personal."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from fastapi.testclient import TestClient

from ledger.application.service import Ledger, LedgerReader
from ledger.process.settings import Settings
from ledger.webhooks.tables import create_tables
from projections.rebuild import rebuild
from projections.web.security import PAGE_POLICY
from tests import builders as b
from tests.history import ALICE, BOB, catch_up, days_ago, ledger, reader, record, rows
from tests.integration.test_api import call, history, tokens
from tests.web_pages import client, signed_in

__all__ = ["history", "ledger", "reader", "tokens"]  # fixtures
ROUTES = (
    "/v1/statistics/consents",
    "/v1/statistics/disclosures",
    "/v1/projections",
    "/v1/erasures",
)
PAGES = ("/console/dashboard", "/console/requests", "/console/erasures")
PERSONAL = ("@example", ALICE, BOB, "carol@", "dave@", "203.0.113")


@pytest.fixture
def web(settings_db_only: Settings, tokens: dict[str, str]) -> Iterator[TestClient]:
    with client(settings_db_only) as web:
        yield web


def get(web: TestClient, token: str, path: str) -> Any:
    response = call(web, token, "GET", path)
    assert response.status_code == 200, response.text
    return response.json()


def series(answer: dict[str, Any], purpose: str) -> dict[date, dict[str, int]]:
    found = next(p for p in answer["purposes"] if p["purpose"] == purpose)
    return {date.fromisoformat(d["day"]): d for d in found["days"]}


def day(n: int) -> date:
    return days_ago(n).astimezone(UTC).date()


def test_the_routes_need_a_reading_scope(web: TestClient, tokens: dict[str, str]) -> None:
    for path in ROUTES:
        assert call(web, tokens["producer"], "GET", path).status_code == 403
        assert call(web, "", "GET", path).status_code == 401
        for scope in ("reader", "auditor", "admin"):
            assert call(web, tokens[scope], "GET", path).status_code == 200, (path, scope)
    for days in (0, 731):
        assert call(web, tokens["reader"], "GET", f"{ROUTES[0]}?days={days}").status_code == 422


def test_consents_over_time_match_the_history(web: TestClient, tokens: dict[str, str]) -> None:
    answer = get(web, tokens["reader"], "/v1/statistics/consents")
    assert answer["until"] == day(0).isoformat() and answer["since"] == day(89).isoformat()
    assert [p["purpose"] for p in answer["purposes"]] == ["billing", "newsletter", "terms"]
    news = series(answer, "newsletter")
    assert len(news) == 90
    # before the window: alice granted and withdrew (day 500, 450), so none stood
    assert news[day(89)]["standing"] == 0
    assert (news[day(30)]["granted"], news[day(30)]["standing"]) == (1, 1)  # bob
    assert (news[day(20)]["granted"], news[day(20)]["standing"]) == (1, 2)  # alice again
    assert (news[day(5)]["withdrawn"], news[day(5)]["standing"]) == (1, 1)  # bob withdrew
    assert (news[day(3)]["granted"], news[day(3)]["standing"]) == (1, 2)  # dave
    assert sum(d["granted"] for d in news.values()) == 3
    assert sum(d["withdrawn"] for d in news.values()) == 1
    terms = series(answer, "terms")  # alice's refused withdrawal changed nothing
    assert {d["standing"] for d in terms.values()} == {1}
    assert sum(d["withdrawn"] for d in terms.values()) == 0
    assert {d["standing"] for d in series(answer, "billing").values()} == {0}
    long = get(web, tokens["auditor"], "/v1/statistics/consents?days=730")
    assert series(long, "newsletter")[day(450)]["withdrawn"] == 1


def test_a_withdrawal_counts_once_on_its_day(
    web: TestClient,
    tokens: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
) -> None:
    before = series(get(web, tokens["reader"], "/v1/statistics/consents?days=7"), "newsletter")
    outcomes = record(
        ledger,
        b.at(b.withdraw(ALICE), days_ago(0)),
        b.at(b.withdraw(ALICE), days_ago(0)),  # already withdrawn: the ledger refuses it
        b.at(b.grant(BOB, "newsletter", "2"), days_ago(0)),
        b.at(b.grant(BOB, "newsletter", "2"), days_ago(0)),  # already granted: no change
    )
    assert outcomes == ["recorded", "rejected", "recorded", "recorded"], outcomes
    catch_up(settings_db_only, reader)
    after = series(get(web, tokens["reader"], "/v1/statistics/consents?days=7"), "newsletter")
    today = day(0)
    assert after[today]["withdrawn"] == before[today]["withdrawn"] + 1
    assert after[today]["granted"] == before[today]["granted"] + 1
    assert after[today]["standing"] == before[today]["standing"]
    assert {d: after[d] for d in after if d != today} == {
        d: before[d] for d in before if d != today
    }


def test_a_rebuild_fills_the_consent_days_alike(
    tokens: dict[str, str], ledger: Ledger, reader: LedgerReader, settings_db_only: Settings
) -> None:
    record(ledger, b.withdraw(ALICE), b.grant(ALICE, "newsletter", "2"), b.withdraw(BOB))
    catch_up(settings_db_only, reader)
    live = rows(settings_db_only, "consent.consent_days", "tenant, purpose, day")
    assert live and all(r["granted"] or r["withdrawn"] for r in live)
    rebuild(settings_db_only, "consent", reader)
    assert rows(settings_db_only, "consent.consent_days", "tenant, purpose, day") == live


def test_disclosures_by_recipient_and_category(web: TestClient, tokens: dict[str, str]) -> None:
    recent = get(web, tokens["reader"], "/v1/statistics/disclosures")
    assert recent["total"] == 2  # alice (day 15) and carol (day 10); carol's day 100 is older
    assert recent["by_recipient"] == [{"name": "mailer-inc", "count": 2}]
    assert recent["by_category"] == [
        {"name": "contact.email", "count": 1},
        {"name": "contact.postal", "count": 1},
    ]
    year = get(web, tokens["reader"], "/v1/statistics/disclosures?days=365")
    assert year["total"] == 3
    assert {c["name"]: c["count"] for c in year["by_category"]}["contact.phone"] == 1
    assert "subject" not in str(year) and "@" not in str(year)


def test_another_tenant_sees_none_of_it(web: TestClient, tokens: dict[str, str]) -> None:
    globex = tokens["globex"]
    assert get(web, globex, "/v1/statistics/consents")["purposes"] == []
    disclosed = get(web, globex, "/v1/statistics/disclosures?days=730")
    assert (disclosed["total"], disclosed["by_recipient"], disclosed["by_category"]) == (0, [], [])
    assert get(web, globex, "/v1/erasures")["erasures"] == []
    assert get(web, tokens["admin"], "/v1/erasures")["erasures"]


def test_projections_report_position_and_lag(web: TestClient, tokens: dict[str, str]) -> None:
    answer = get(web, tokens["reader"], "/v1/projections")
    names = {p["name"] for p in answer["projections"]}
    assert {"consent", "records", "erasure"} <= names
    for p in answer["projections"]:
        assert p["lag"] == 0 and p["position"] == answer["head"] and not p["rebuilding"]


def test_erasures_list_status_and_webhook_deliveries(
    web: TestClient, tokens: dict[str, str], history: dict[str, str], settings_db_only: Settings
) -> None:
    (erasure,) = get(web, tokens["reader"], "/v1/erasures")["erasures"]
    assert erasure["event_id"] == history["erase"] and erasure["subject_id"] == history["dave"]
    assert erasure["status"] == "shredded" and not erasure["overdue"]
    assert erasure["deliveries"] == [] and "reason" not in erasure
    settled = datetime.now(UTC).replace(microsecond=0)
    _outbox(settings_db_only, history, settled)
    (erasure,) = get(web, tokens["reader"], "/v1/erasures?limit=1")["erasures"]
    assert erasure["deliveries"] == [
        {
            "recipient": "mailer-inc",
            "status": "delivered",
            "attempts": 2,
            "last_status_code": 204,
            "settled_at": settled.isoformat().replace("+00:00", "Z"),
        }
    ]


def _outbox(settings: Settings, history: dict[str, str], settled: datetime) -> None:
    """A delivered erasure webhook in the notifier's outbox, as ``ledger webhooks`` leaves it."""
    schema = settings.database_schema
    with psycopg.connect(settings.require_database(), autocommit=True) as conn:
        create_tables(conn, schema)
        conn.execute(
            f'INSERT INTO "{schema}".webhook_requests (tenant, request_event_id, subject_id, '
            "ledger_sequence, erased_at, planned_at, check_after) "
            "VALUES (%s, %s, %s, 1, now(), now(), now())",
            [b.TENANT, history["erase"], history["dave"]],
        )
        conn.execute(
            f'INSERT INTO "{schema}".webhook_deliveries (delivery_id, tenant, request_event_id, '
            "recipient, body, status, attempts, last_status_code, next_attempt_at, settled_at) "
            "VALUES (%s, %s, %s, 'mailer-inc', '{}', 'delivered', 2, 204, now(), %s)",
            [uuid4(), b.TENANT, history["erase"], settled],
        )


def open_request(web: TestClient, token: str, ref: str, received: datetime) -> str:
    body = {"subject_ref": ref, "kind": "ACCESS", "channel": "email"}
    response = call(
        web, token, "POST", "/v1/subject/requests", {**body, "received_at": received.isoformat()}
    )
    assert response.status_code == 201, response.text
    event_id: str = response.json()["event_id"]
    return event_id


def test_the_register_lists_overdue_requests_first_and_alone_on_asking(
    web: TestClient, tokens: dict[str, str], reader: LedgerReader, settings_db_only: Settings
) -> None:
    now = datetime.now(UTC)
    late = open_request(web, tokens["admin"], ALICE, now - timedelta(days=40))
    soon = open_request(web, tokens["admin"], BOB, now - timedelta(days=27))
    fresh = open_request(web, tokens["admin"], BOB, now - timedelta(days=1))
    catch_up(settings_db_only, reader)
    signed_in(web, tokens["reader"])
    page = web.get("/console/requests")
    assert page.status_code == 200
    listed = re.findall(r'<tr data-request-id="([^"]+)"', page.text)
    assert listed[:2] == [late, soon] and fresh in listed
    row = _row(page.text, late)
    assert '<span class="state overdue">overdue</span>' in row
    assert "<td>Access</td>" in row
    assert '<span class="state due_soon">due soon</span>' in _row(page.text, soon)
    assert "state overdue" not in _row(page.text, fresh) and "due_soon" not in _row(
        page.text, fresh
    )
    overdue = web.get("/console/requests?state=overdue")
    assert re.findall(r'<tr data-request-id="([^"]+)"', overdue.text) == [late]
    assert '<option value="overdue" selected>' in overdue.text
    erasures = web.get("/console/requests?state=all&kind=ERASURE")
    assert re.findall(r'<tr data-request-id="([^"]+)"', erasures.text) == ["erase-event"]
    assert web.get("/console/requests?state=late").status_code == 422
    assert web.get("/console/requests?kind=NOPE").status_code == 400
    german = web.get("/console/requests?state=overdue&lang=de")
    assert '<span class="state overdue">überfällig</span>' in german.text


def _row(html: str, request_id: str) -> str:
    start = html.index(f'<tr data-request-id="{request_id}"')
    return html[start : html.index("</tr>", start)]


@pytest.mark.parametrize("scope", ["reader", "auditor"])
def test_the_pages_render_with_nothing_personal_and_the_policy(
    web: TestClient, tokens: dict[str, str], history: dict[str, str], scope: str
) -> None:
    signed_in(web, tokens[scope])
    for path in PAGES:
        page = web.get(path)
        assert page.status_code == 200, (path, page.text)
        assert page.headers["content-security-policy"] == PAGE_POLICY
        assert " style=" not in page.text and "<script" not in page.text
        for value in PERSONAL:
            assert value not in page.text, (path, value)
    dashboard = web.get("/console/dashboard?days=30").text
    assert dashboard.count('role="img"') == 1 + 3 + 2  # standing, one per purpose, disclosures
    assert dashboard.count("<title id=") == dashboard.count("<desc id=") == 6
    news = dashboard.split('data-purpose="newsletter"')[1].split("</table>")[0]
    assert f'<tr data-day="{day(5)}"><th scope="row">{day(5)}</th><td class="num">0</td>'
    assert (
        f'{day(5)}</th><td class="num">0</td><td class="num">1</td><td class="num">1</td>' in news
    )
    assert 'id="projection-lag"' in dashboard and 'data-projection="consent"' in dashboard
    erasures = web.get("/console/erasures").text
    assert f'data-request-id="{history["erase"]}"' in erasures and history["dave"] in erasures


def test_the_pages_check_their_parameters_and_the_keys_scope(
    web: TestClient, tokens: dict[str, str]
) -> None:
    assert web.get("/console/dashboard", follow_redirects=False).status_code == 303
    signed_in(web, tokens["producer"])
    for path in PAGES:
        refused = web.get(path)
        assert refused.status_code == 403
        assert refused.headers["content-security-policy"] == PAGE_POLICY
    web.cookies.clear()
    signed_in(web, tokens["reader"])
    assert web.get("/console/dashboard?days=731").status_code == 422
