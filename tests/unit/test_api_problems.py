"""Problem documents: every error is problem+json, and none echoes what the client sent.

The last tests install the metrics layer on the same app, because the two meet: a 500 from
an unexpected exception and a 404 for an unknown path must be labelled without raw paths.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from fastapi import FastAPI
from httpx2 import Response
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, field_validator
from starlette.exceptions import StarletteDeprecationWarning
from structlog.testing import capture_logs

from projections.api import metrics, problems
from projections.api.problems import PROBLEM_RESPONSES, NotFound, Unauthorized

with warnings.catch_warnings():
    # Starlette 1.x asks for httpx2 under its test client; httpx (our dev dependency) works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

EMAIL = "alice@example.com"


class Order(BaseModel):
    quantity: int


class Contact(BaseModel):
    email: str

    @field_validator("email")
    @classmethod
    def check_domain(cls, value: str) -> str:
        raise ValueError(f"{value} is not on an allowed domain")  # a careless validator


def build_app() -> FastAPI:
    app = FastAPI()
    problems.install(app)
    metrics.install(app, CollectorRegistry())

    @app.post("/orders", responses=PROBLEM_RESPONSES)
    def order(body: Order) -> dict[str, int]:
        return {"quantity": body.quantity}

    @app.post("/contacts")
    def contact(body: Contact) -> dict[str, str]:
        return {}

    @app.get("/subjects/{ref}")
    def subject(ref: str, limit: int = 10) -> dict[str, str]:
        raise NotFound("this tenant has no subject with that reference")

    @app.get("/private")
    def private() -> None:
        raise Unauthorized("an API key is needed")

    @app.get("/boom/{ref}")
    def boom(ref: str) -> None:
        raise RuntimeError(f"cannot handle {ref}")

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(build_app())


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert str(body["type"]).startswith(problems.TYPE_BASE)
    assert body["title"]
    return dict(body)


def test_a_validation_error_names_the_field_but_not_the_value(client: TestClient) -> None:
    response = client.post("/orders", json={"quantity": EMAIL})

    body = assert_problem(response, 422)
    assert EMAIL not in response.text
    [error] = body["errors"]
    assert error["loc"] == ["body", "quantity"]
    assert error["type"] == "int_parsing"
    assert error["msg"].startswith("Input should be a valid integer")


def test_a_validator_message_quoting_the_value_is_replaced(client: TestClient) -> None:
    response = client.post("/contacts", json={"email": EMAIL})

    body = assert_problem(response, 422)
    assert EMAIL not in response.text
    assert body["errors"] == [
        {"loc": ["body", "email"], "msg": problems.REDACTED_MESSAGE, "type": "value_error"}
    ]


def test_invalid_query_parameters_and_json_are_problems_too(client: TestClient) -> None:
    query = client.get("/subjects/x", params={"limit": EMAIL})
    broken = client.post(
        "/orders",
        content=b'{"quantity": "' + EMAIL.encode(),
        headers={"content-type": "application/json"},
    )

    assert_problem(query, 422)
    assert_problem(broken, 422)
    assert EMAIL not in query.text
    assert EMAIL not in broken.text


def test_an_unknown_route_is_a_not_found_problem(client: TestClient) -> None:
    response = client.get("/no/such/route")

    body = assert_problem(response, 404)
    assert body["type"] == problems.problem_type("not-found")
    assert body["title"] == "Not Found"


def test_a_wrong_method_is_a_problem_that_keeps_the_allow_header(client: TestClient) -> None:
    response = client.delete("/orders")

    assert_problem(response, 405)
    assert response.headers["allow"] == "POST"


def test_a_raised_problem_keeps_its_detail_and_headers(client: TestClient) -> None:
    missing = client.get(f"/subjects/{EMAIL}")
    private = client.get("/private")

    assert (
        assert_problem(missing, 404)["detail"] == "this tenant has no subject with that reference"
    )
    assert assert_problem(private, 401)["detail"] == "an API key is needed"
    assert private.headers["www-authenticate"] == "Bearer"


def test_an_unexpected_exception_is_a_generic_500_logged_without_its_message(
    client: TestClient,
) -> None:
    with capture_logs() as logs:
        response = client.get(f"/boom/{EMAIL}")

    body = assert_problem(response, 500)
    assert body["detail"] == problems.UNEXPECTED_DETAIL
    assert EMAIL not in response.text
    [entry] = [e for e in logs if e["event"] == "request_failed"]
    assert entry["error"] == "RuntimeError"
    assert entry["route"] == "/boom/{ref}"
    assert EMAIL not in repr(entry)


def test_the_openapi_document_lists_problem_responses(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    responses = document["paths"]["/orders"]["post"]["responses"]
    assert set(responses) >= {"400", "401", "403", "404", "422", "503"}
    assert list(responses["404"]["content"]) == ["application/problem+json"]
    schemas = document["components"]["schemas"]
    assert {"ProblemDocument", "FieldError"} <= set(schemas)
    assert "/metrics" not in document["paths"]


def test_metrics_label_routes_by_template_and_count_failures(client: TestClient) -> None:
    client.get(f"/subjects/{EMAIL}")
    client.get(f"/boom/{EMAIL}")
    client.get(f"/no/{EMAIL}")

    page = client.get("/metrics")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    text = page.text
    assert EMAIL not in text
    name = "ledger_http_request_duration_seconds_count"
    assert f'{name}{{method="GET",route="/subjects/{{ref}}",status="404"}} 1.0' in text
    assert f'{name}{{method="GET",route="/boom/{{ref}}",status="500"}} 1.0' in text
    assert f'{name}{{method="GET",route="{metrics.UNMATCHED}",status="404"}} 1.0' in text
    assert 'le="0.0075"' in text
