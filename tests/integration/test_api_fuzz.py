"""The query API fuzzed from its own OpenAPI document (schemathesis), in process, on a real
PostgreSQL holding two tenants' data.

Every operation gets generated requests, valid and invalid, with an admin and with a reader key
of tenant acme. Each answer must: not be a server error; conform to the documented status
codes, content types, headers and response schema; and carry nothing of tenant globex (its
subject ids, event ids, references, purpose and recipient names) — including when acme's key
asks for globex's subjects by id. Routes that record facts (erasure, legal holds, reports) are
fuzzed too: bad input is a 4xx problem. The test prints how many cases ran.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ledger.application.service import Ledger, LedgerReader
from ledger.domain.values import LegalBasis
from ledger.integrity.checkpoints import new_private_key
from ledger.process.settings import Settings
from projections.api import access
from projections.api.app import create_app, prepare
from tests import builders as b
from tests.history import ALICE, catch_up, ledger, reader, scripted_history, subject_id

__all__ = ["ledger", "reader"]  # fixtures
pytestmark = [
    pytest.mark.fuzz,
    # The app's own threads (replay builds, psycopg_pool's connection jitter) draw from the
    # global `random` while hypothesis generates a case; that is not a strategy using it.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

MAX_EXAMPLES = 25  # per operation, key and generation mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
GLOBEX_REF = "frank.globex@example.com"


@dataclass
class Globex:
    """What acme's keys must never see: tenant globex's identifiers and names."""

    secrets: list[str] = field(default_factory=list)
    subject_ids: list[str] = field(default_factory=list)


def globex_history(ledger: Ledger) -> Globex:
    run = uuid.uuid4().hex[:8]
    purpose, recipient = f"globex-loyalty-{run}", f"globex-partner-{run}"
    ids = [f"globex-{kind}-{run}" for kind in ("grant", "collect", "disclose", "hold")]
    outcomes = ledger.record(
        [
            b.define_purpose(purpose, tenant="globex", text="Globex loyalty programme"),
            b.grant(GLOBEX_REF, purpose, event_id=ids[0], tenant="globex"),
            b.collect(GLOBEX_REF, purpose, event_id=ids[1], tenant="globex"),
            b.disclose(
                GLOBEX_REF,
                purpose,
                LegalBasis.CONSENT,
                event_id=ids[2],
                recipient=recipient,
                tenant="globex",
            ),
            b.hold(GLOBEX_REF, f"globex-case-{run}", event_id=ids[3], tenant="globex"),
        ]
    )
    assert {o.status for o in outcomes} == {"recorded"}
    found = ledger.find_subject("globex", GLOBEX_REF)
    assert found is not None
    subject = str(found.id)
    return Globex([*ids, purpose, recipient, GLOBEX_REF, subject, f"globex-case-{run}"], [subject])


@pytest.fixture
def world(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings
) -> tuple[Globex, dict[str, str], str]:
    """Both tenants' histories projected, acme's keys, and one of acme's subject ids."""
    scripted_history(ledger)
    globex = globex_history(ledger)
    catch_up(settings_db_only, reader, sweep=True)
    prepare(settings_db_only)
    schema = settings_db_only.database_schema
    with psycopg.connect(settings_db_only.require_database(), autocommit=True) as conn:
        keys = {
            scope: access.create_key(conn, schema, b.TENANT, [scope], "fuzz")[0]
            for scope in ("admin", "reader")
        }
    return globex, keys, str(subject_id(ledger, ALICE))


@pytest.fixture
def api_schema(settings_db_only: Settings) -> Iterator[Any]:
    # with a documents key, as a server that signs receipts and certificates has
    app = create_app(replace(settings_db_only, document_key=new_private_key()))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    asgi.shutdown_lifespans()  # closes the app's connection pool before the schema is dropped


@dataclass
class Tally:
    cases: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        total, operations = sum(self.cases.values()), len(self.cases)
        failures = len(self.failures)
        return f"schemathesis: {total} cases over {operations} operations, {failures} failures"


def no_globex_data(globex: Globex) -> Callable[..., None]:
    def check(ctx: Any, response: Any, case: Any) -> None:
        leaked = [s for s in globex.secrets if s.encode() in response.content]
        assert not leaked, f"tenant globex's data in an answer to acme's key: {leaked}"

    check.__name__ = "no_cross_tenant_data"
    return check


def fuzz_operation(
    operation: Any, strategy: Any, headers: dict[str, str], extra: Callable[..., None], tally: Tally
) -> None:
    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: Any) -> None:
        tally.cases[operation.label] = tally.cases.get(operation.label, 0) + 1
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS, additional_checks=[extra], headers=headers)

    try:
        run()
    except Unsatisfiable:  # no invalid request exists for an operation without inputs
        tally.cases.setdefault(operation.label, 0)
    except (Exception, BaseExceptionGroup) as exc:  # every operation runs; reported together
        inner = getattr(exc, "exceptions", [])
        tally.failures.append(f"{operation.label}: {exc}\n" + "\n".join(map(str, inner)))


def test_the_api_survives_its_own_openapi_document(
    api_schema: Any, world: tuple[Globex, dict[str, str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    globex, keys, alice = world
    check, tally = no_globex_data(globex), Tally()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    for operation in operations:
        subject_ids = [None]
        if "{subject_id}" in operation.path:
            subject_ids = [None, alice, *globex.subject_ids]  # random, acme's, globex's
        for token in keys.values():
            headers = {"Authorization": f"Bearer {token}"}
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for sid in subject_ids if mode is GenerationMode.POSITIVE else [None]:
                    params = {"subject_id": sid} if sid else None
                    strategy = operation.as_strategy(generation_mode=mode, path_parameters=params)
                    fuzz_operation(operation, strategy, headers, check, tally)
    with capsys.disabled():
        for label, count in sorted(tally.cases.items()):
            print(f"  {count:5d}  {label}")
        print(tally.line())
    print(tally.line())
    assert not tally.failures, "\n\n".join(tally.failures)
    assert len(tally.cases) == len(operations)
