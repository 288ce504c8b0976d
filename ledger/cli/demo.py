"""``ledger demo``: a realistic sample of events, sent through Kafka like any producer would.

The story is an e-signature service (tenant ``demo``): sign-up consents, a newsletter
consent re-granted under a new text version and withdrawn, the record of collection for a
signed document, disclosures to a hosting provider and a mailing service, an erasure, an
objection to marketing, a restriction of processing during a dispute, a correction, and
requests in the register answered on time and late — plus the mistakes producers make, which
the ledger refuses with a reason. The demo waits
until every event is recorded or rejected and prints what happened to each.

Like a real producer it seals every personal field to the ledger's ingest key (read here from
the database; producers fetch it from ``GET /v1/ingest-key``), and shows that a producer
sending them in clear is refused: the demo tenant does not allow plaintext ingest.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from ledger.application.service import Ledger
from ledger.cli import common, demo_api
from ledger.cli.common import fail, invocation, settings
from ledger.client import LedgerClient, message_key
from ledger.domain.rules import TenantExists
from ledger.kafka.admin import (
    BrokerUnavailable,
    default_partitions,
    ensure_topics,
    ingest_topic_configs,
)
from ledger.kafka.consumer import TopicPartition, make_consumer
from ledger.process.settings import ConfigError, Settings
from ledger.storage.store import LedgerStore
from ledger.wire import avro

ALICE, BOB = "alice@example.com", "bob@example.org"
TERMS, NEWS, SIGN = "terms.service", "marketing.newsletter", "signing.audit-trail"


@dataclass
class Step:
    label: str
    expect: str  # "recorded", "duplicate" or a rejection reason
    send: Callable[..., str]
    event_id: str = ""
    raw: bytes = b""
    outcome: str = ""


def _purposes(tenant: str) -> list[Step]:
    def define(code: str, basis: str, text: str, version: str, **flags: bool) -> Step:
        return Step(
            f"purpose {code} v{version}",
            "recorded",
            lambda c, **kw: c.define_purpose(
                tenant=tenant,
                purpose=code,
                consent_text=text,
                consent_text_version=version,
                legal_basis=basis,
                **flags,
                **kw,
            ),
        )

    news = {"direct_marketing": True}
    return [
        define(TERMS, "CONSENT", "I accept the Terms of Service.", "2026-01", required=True),
        define(NEWS, "CONSENT", "Send me product news by e-mail.", "2026-01", **news),
        define(NEWS, "CONSENT", "Send me product news and offers by e-mail.", "2026-06", **news),
        define(
            SIGN,
            "CONTRACT",
            "We keep an audit trail to prove your signatures.",
            "1",
            allowed_under_restriction=True,
        ),
    ]


def _story(tenant: str, carol: str, dana: str) -> list[Step]:
    t: dict[str, Any] = {"tenant": tenant}
    web = {"source": "signup-form", "ip_address": "203.0.113.7", "user_agent": "Mozilla/5.0"}

    def grant(ref: str, purpose: str, version: str) -> Callable[..., str]:
        return lambda c, **kw: c.grant_consent(
            **t, subject_ref=ref, purpose=purpose, consent_text_version=version, **web, **kw
        )

    def withdraw(ref: str, purpose: str) -> Callable[..., str]:
        return lambda c, **kw: c.withdraw_consent(
            **t, subject_ref=ref, purpose=purpose, source="account-settings", **kw
        )

    def disclose(ref: str, to: str, purpose: str, basis: str) -> Callable[..., str]:
        return lambda c, **kw: c.record_disclosure(
            **t,
            subject_ref=ref,
            recipient=to,
            purpose=purpose,
            legal_basis=basis,
            categories=["identity.name", "contact.email"],
            reference="DPA-2026-014",
            **kw,
        )

    def collect(ref: str) -> Callable[..., str]:
        return lambda c, **kw: c.record_collection(
            **t,
            subject_ref=ref,
            purpose=SIGN,
            source="data-subject",
            categories=["identity.name", "contact.email", "signature.image"],
            description="Signed lease agreement, 3 pages",
            **kw,
        )

    return [
        Step("alice accepts the terms", "recorded", grant(ALICE, TERMS, "2026-01")),
        Step("alice subscribes to the newsletter", "recorded", grant(ALICE, NEWS, "2026-01")),
        Step("alice signs a document (collection)", "recorded", collect(ALICE)),
        Step(
            "alice's signature to the hosting provider",
            "recorded",
            disclose(ALICE, "Cloud Hosting Ltd", SIGN, "CONTRACT"),
        ),
        Step(
            "a 'consent' to the audit trail (a contract purpose)",
            "purpose_not_consent_based",
            grant(ALICE, SIGN, "1"),
        ),
        Step("alice agrees to the new newsletter text", "recorded", grant(ALICE, NEWS, "2026-06")),
        Step(
            "alice's e-mail to the mailing service",
            "recorded",
            disclose(ALICE, "Mailer Co", NEWS, "CONSENT"),
        ),
        Step("bob accepts the terms", "recorded", grant(BOB, TERMS, "2026-01")),
        Step("bob subscribes to the newsletter", "recorded", grant(BOB, NEWS, "2026-01")),
        Step("bob unsubscribes", "recorded", withdraw(BOB, NEWS)),
        Step(
            "bob's e-mail to the mailing service anyway",
            "no_legal_basis",
            disclose(BOB, "Mailer Co", NEWS, "CONSENT"),
        ),
        Step("bob tries to withdraw the required terms", "required_consent", withdraw(BOB, TERMS)),
        Step("carol accepts the terms", "recorded", grant(carol, TERMS, "2026-01")),
        Step(
            "carol asks to be erased",
            "recorded",
            lambda c, **kw: c.request_erasure(
                **t, subject_ref=carol, source="support-ticket", **kw
            ),
        ),
        Step(
            "carol's newsletter consent after erasure",
            "subject_erased",
            grant(carol, NEWS, "2026-06"),
        ),
        Step(
            "consent to an unknown text version",
            "unknown_consent_version",
            grant(ALICE, NEWS, "1999-01"),
        ),
        *_rights(t, dana, grant),
        Step(
            "an event for an unregistered tenant",
            "unknown_tenant",
            lambda c, **kw: c.grant_consent(
                tenant="nobody",
                subject_ref=ALICE,
                purpose=TERMS,
                consent_text_version="2026-01",
                source="api",
                **kw,
            ),
        ),
    ]


def _rights(t: dict[str, Any], dana: str, grant: Callable[..., Any]) -> list[Step]:
    """Objection to marketing, a restriction while dana disputes her data, a correction of
    it, and her requests in the register: one answered on time, one late (art. 12(3), 16, 18,
    21). Event ids are each run's own, since dana is."""
    run = dana.rsplit("-", 1)[-1]
    case, signed, fix = f"dispute-{run}", f"signed-{run}", f"fix-{run}"
    who = {**t, "subject_ref": dana}
    late = datetime.now(UTC) - timedelta(days=40)
    return [
        Step(
            "dana asks to correct her address (a request)",
            "recorded",
            lambda c, **kw: c.open_request(
                **who, kind="RECTIFICATION", channel="email", **{**kw, "event_id": f"rq1-{run}"}
            ),
        ),
        Step(
            "dana's access request, 40 days ago, never answered",
            "recorded",
            lambda c, **kw: c.open_request(
                **who,
                kind="ACCESS",
                channel="letter",
                occurred_at=late,
                **{**kw, "event_id": f"rq2-{run}"},
            ),
        ),
        Step(
            "dana signs a document (collection)",
            "recorded",
            lambda c, **kw: c.record_collection(
                **who,
                purpose=SIGN,
                source="data-subject",
                categories=["contact.postal"],
                description="Lease for 12 Rose Lane",
                **{**kw, "event_id": signed},
            ),
        ),
        Step(
            "the address on dana's document is corrected",
            "recorded",
            lambda c, **kw: c.rectify(
                **who,
                corrects_event_id=signed,
                field="description",
                value="Lease for 14 Rose Lane",
                source="email",
                **{**kw, "event_id": fix},
            ),
        ),
        Step(
            "dana's correction request answered on time",
            "recorded",
            lambda c, **kw: c.complete_request(
                **who, request_id=f"rq1-{run}", resolved_by_event_id=fix, **kw
            ),
        ),
        Step(
            "her request 'answered' by an unrelated event",
            "resolution_mismatch",
            lambda c, **kw: c.complete_request(
                **who, request_id=f"rq2-{run}", resolved_by_event_id=signed, **kw
            ),
        ),
        Step("dana accepts the terms", "recorded", grant(dana, TERMS, "2026-01")),
        Step("dana subscribes to the newsletter", "recorded", grant(dana, NEWS, "2026-06")),
        Step(
            "dana objects to marketing e-mail",
            "recorded",
            lambda c, **kw: c.raise_objection(**who, purpose=NEWS, source="phone", **kw),
        ),
        Step(
            "'compelling grounds' against a marketing objection",
            "objection_absolute",
            lambda c, **kw: c.record_compelling_grounds(
                **who, purpose=NEWS, grounds_reference="lia-1", reasoning="sales target", **kw
            ),
        ),
        Step(
            "dana disputes her address: processing restricted",
            "recorded",
            lambda c, **kw: c.restrict_processing(
                **who,
                restriction_reference=case,
                grounds="ACCURACY_CONTESTED",
                source="email",
                **kw,
            ),
        ),
        Step(
            "lifting a restriction that was never made",
            "restriction_unknown",
            lambda c, **kw: c.lift_restriction(
                **who, restriction_reference="no-such-case", source="email", **kw
            ),
        ),
    ]


def demo(
    tenant: Annotated[str, typer.Option(help="Tenant to use (registered if missing).")] = "demo",
    wait: Annotated[float, typer.Option(help="Seconds to wait for the ledger.")] = 60.0,
) -> None:
    """Send sample events (and some bad ones) and show what the ledger did with each."""
    s = settings()
    bootstrap = _topics_ready(s)
    ledger = common.ledger(s)
    with contextlib.suppress(TenantExists):
        ledger.register_tenant(tenant, "Demo e-signatures")
    # The privacy center's "download my data" is the subject's own report request.
    ledger.set_subject_reports(tenant, allow=True)
    # "nobody" is the unregistered tenant of a mistake below; its key is as public as ours.
    keys = [ledger.ingest_keys.public_key_for(t) for t in (tenant, "nobody")]
    watcher = _Watcher(s, ledger.store, tenant)
    try:
        with LedgerClient(
            bootstrap, producer="ledger-demo", topic=s.topics.ingest, ingest_key=keys
        ) as client:
            purposes = _send(client, _purposes(tenant))
            watcher.wait(purposes, wait)  # a purpose must be recorded before events use it
            # Erasure is for good: each run erases a new customer.
            carol = f"customer-{secrets.token_hex(3)}"
            dana = f"customer-{secrets.token_hex(3)}"
            story = _send(client, _story(tenant, carol, dana))
            first = story[0]
            again = Step("alice's terms consent, sent again", "recorded once", first.send)
            again.event_id = first.send(client, event_id=first.event_id)
            # Same partition as the copy, so once this is rejected the copy was processed.
            garbage = Step("bytes that are not Avro", "undecodable", first.send)
            garbage.raw = b"not avro " + os.urandom(8)
            client.send_raw(garbage.raw, key=message_key(tenant, ALICE, keys[0].routing_key))
        in_clear = _send_in_clear(bootstrap, s.topics.ingest, tenant)
        steps = [*purposes, *story, garbage, in_clear]
        watcher.wait(steps, wait)
        copies = _copies(ledger, tenant, ALICE, first.event_id)
        again.outcome = "recorded once" if copies == 1 else f"{copies} events with this id"
    finally:
        watcher.close()
        ledger.close()
    failures = _report([*steps, again])
    checks = [
        ("alice, newsletter", ALICE, NEWS, "consent_granted"),
        ("bob, newsletter", BOB, NEWS, "consent_withdrawn"),
        ("bob, terms (withdrawal refused)", BOB, TERMS, "consent_granted"),
        ("the erased customer, terms", carol, TERMS, "subject_erased"),
        ("the customer in a dispute, newsletter", dana, NEWS, "processing_restricted"),
        ("the customer in a dispute, audit trail (kept)", dana, SIGN, "legal_basis"),
    ]
    api_ok = demo_api.show(s, tenant, checks, wait)
    if failures or not api_ok:
        fail(f"{failures} step(s) did not end as expected" if failures else "API check failed", 1)


def _topics_ready(s: Settings) -> str:
    """The broker's bootstrap list, once the ledger's topics exist."""
    try:
        bootstrap = s.require_kafka()
        ensure_topics(
            bootstrap,
            default_partitions(s.topics),
            configs=ingest_topic_configs(s.topics, s.ingest_retention),
            replication=s.kafka_replication,
        )
    except (ConfigError, BrokerUnavailable) as exc:
        fail(str(exc))
    return bootstrap


def _send_in_clear(bootstrap: str, topic: str, tenant: str) -> Step:
    """An old producer without the ingest key: its personal fields travel in clear."""
    step = Step(
        "a producer sending personal data in clear",
        "plaintext_personal_data",
        lambda c, **kw: c.grant_consent(
            tenant=tenant,
            subject_ref=ALICE,
            purpose=NEWS,
            consent_text_version="2026-06",
            source="legacy-crm",
            **kw,
        ),
    )
    with LedgerClient(bootstrap, producer="legacy-crm", topic=topic) as plain:
        step.event_id = step.send(plain)
    return step


def _send(client: LedgerClient, steps: list[Step]) -> list[Step]:
    for step in steps:
        step.event_id = step.send(client)
    client.flush()
    return steps


def _copies(ledger: Ledger, tenant: str, ref: str, event_id: str) -> int:
    subject = ledger.find_subject(tenant, ref)
    events = ledger.subject_events(subject.id) if subject else []
    return sum(getattr(e, "event_id", None) == event_id for e in events)


class _Watcher:
    """Learns each step's outcome: a receipt in the ledger, or a record on the rejected topic."""

    def __init__(self, s: Settings, store: LedgerStore, tenant: str) -> None:
        self.store = store
        self.tenant = tenant
        self.consumer = make_consumer(s.require_kafka(), group=None)
        partitions = self.consumer.partitions_for_topic(s.topics.rejected) or {0}
        self.consumer.assign([TopicPartition(s.topics.rejected, p) for p in sorted(partitions)])
        self.consumer.seek_to_beginning()
        self.rejections: dict[str | bytes, str] = {}

    def wait(self, steps: list[Step], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while any(not step.outcome for step in steps) and time.monotonic() < deadline:
            self._read_rejections()
            open_steps = [step for step in steps if not step.outcome]
            keys = [(self.tenant, step.event_id) for step in open_steps if step.event_id]
            recorded = {event_id for _, event_id in self.store.recorded_receipts(keys)}
            for step in open_steps:
                if step.event_id in recorded:
                    step.outcome = "recorded"
                elif (step.event_id or step.raw) in self.rejections:
                    step.outcome = self.rejections[step.event_id or step.raw]
            time.sleep(0.2)
        for step in steps:
            step.outcome = step.outcome or "no outcome yet (is `ledger dev` running?)"

    def _read_rejections(self) -> None:
        for records in self.consumer.poll(timeout_ms=100).values():
            for record in records:
                reason = dict(record.headers or []).get("reason", b"?").decode()
                self.rejections[_event_id(record.value)] = reason

    def close(self) -> None:
        self.consumer.close()


def _event_id(value: bytes) -> str | bytes:
    """A rejected message's event id (read without opening its sealed fields), or the
    message itself if it has none."""
    try:
        _, record = avro.decode(value)
        return str(record["envelope"]["event_id"])
    except (avro.UndecodableMessage, avro.UnknownSchema, KeyError, TypeError):
        return value


def _report(steps: list[Step]) -> int:
    width = max(len(step.label) for step in steps)
    failures = 0
    for step in steps:
        ok = step.outcome == step.expect
        failures += not ok
        mark = typer.style("ok " if ok else "!! ", fg="green" if ok else "red")
        typer.echo(f"{mark} {step.label.ljust(width)}  {step.outcome}")
    cmd = invocation()
    typer.echo(
        "\nLook closer:\n"
        f"  {cmd} subject show --tenant demo --ref alice@example.com [--decrypt]\n"
        f"  {cmd} topic tail ledger\n"
        f"  {cmd} topic tail rejected"
    )
    return failures


def register(app: typer.Typer) -> None:
    app.command()(demo)
