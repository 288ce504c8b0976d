"""Erasure webhooks without I/O: retry timing, signatures, targets, bodies, URL rules."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from consumers.notifier import UnreadableRecord, erasure_of, retry_policy
from ledger.process.settings import ConfigError, load
from ledger.webhooks import endpoints, notice, signing
from ledger.webhooks.retry import RetryPolicy
from ledger.wire import avro

SUBJECT = uuid.UUID("0b9a4a53-33c3-4b47-9d0e-7a7f6c1c2f10")
ERASED_AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def erasure(**changes: Any) -> notice.Erasure:
    fields: dict[str, Any] = {
        "tenant": "acme",
        "subject_id": SUBJECT,
        "request_event_id": "req-1",
        "sequence": 42,
        "requested_at": ERASED_AT - timedelta(minutes=5),
        "erased_at": ERASED_AT,
        "disclosed_to": {"mailer-inc": ("d-1", "d-3"), "courier-co": ("d-2",)},
    }
    return notice.Erasure(**{**fields, **changes})


# Retry timing.


def test_the_wait_doubles_from_the_base_and_jitter_keeps_it_between_half_and_all() -> None:
    policy = RetryPolicy(max_attempts=10, base=timedelta(seconds=2), max_delay=timedelta(hours=1))
    for attempt, full in [(1, 2), (2, 4), (3, 8), (6, 64)]:
        assert policy.delay(attempt, rand=lambda: 1.0) == timedelta(seconds=full)
        assert policy.delay(attempt, rand=lambda: 0.0) == timedelta(seconds=full / 2)
        for _ in range(50):
            assert timedelta(seconds=full / 2) <= policy.delay(attempt) <= timedelta(seconds=full)


def test_the_wait_never_exceeds_the_maximum_even_after_many_attempts() -> None:
    policy = RetryPolicy(max_attempts=500, base=timedelta(seconds=2), max_delay=timedelta(hours=1))
    assert policy.delay(13, rand=lambda: 1.0) == timedelta(hours=1)
    assert policy.delay(400, rand=lambda: 1.0) == timedelta(hours=1)


def test_the_last_attempt_is_max_attempts_and_the_default_schedule_spans_hours() -> None:
    policy = RetryPolicy()
    assert not policy.gives_up_after(policy.max_attempts - 1)
    assert policy.gives_up_after(policy.max_attempts)
    # 2 s, 4 s ... 2048 s, then four waits of an hour: about 5 h from first to last attempt.
    assert policy.longest_schedule() == timedelta(seconds=4094 + 4 * 3600)


def test_a_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base=timedelta(seconds=10), max_delay=timedelta(seconds=5))


def test_the_retry_settings_are_read_from_the_environment(tmp_path: Path) -> None:
    defaults = load({"LEDGER_DATA_DIR": str(tmp_path)})
    assert retry_policy(defaults) == RetryPolicy(16, timedelta(seconds=2), timedelta(hours=1))
    assert (defaults.notifier_group, defaults.webhook_timeout) == (
        "ledger-notifier",
        timedelta(seconds=10),
    )
    custom = load(
        {
            "LEDGER_DATA_DIR": str(tmp_path),
            "LEDGER_NOTIFIER_GROUP": "notifier-eu",
            "LEDGER_WEBHOOK_MAX_ATTEMPTS": "5",
            "LEDGER_WEBHOOK_RETRY_BASE": "30s",
            "LEDGER_WEBHOOK_RETRY_MAX": "2h",
            "LEDGER_WEBHOOK_TIMEOUT": "3s",
        }
    )
    assert retry_policy(custom) == RetryPolicy(5, timedelta(seconds=30), timedelta(hours=2))
    assert (custom.notifier_group, custom.webhook_timeout) == ("notifier-eu", timedelta(seconds=3))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEDGER_WEBHOOK_MAX_ATTEMPTS", "0"),
        ("LEDGER_WEBHOOK_RETRY_BASE", "2 seconds"),
        ("LEDGER_WEBHOOK_TIMEOUT", "0s"),
    ],
)
def test_a_bad_retry_setting_is_refused_by_name(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load({"LEDGER_DATA_DIR": str(tmp_path), name: value})


def test_a_longest_wait_below_the_first_one_is_refused(tmp_path: Path) -> None:
    upside_down = load(
        {
            "LEDGER_DATA_DIR": str(tmp_path),
            "LEDGER_WEBHOOK_RETRY_BASE": "1h",
            "LEDGER_WEBHOOK_RETRY_MAX": "10m",
        }
    )
    with pytest.raises(ConfigError, match="LEDGER_WEBHOOK_RETRY_MAX"):
        retry_policy(upside_down)


# Signatures.


def test_signed_headers_verify_with_the_standard_webhooks_library() -> None:
    secret = signing.new_secret()
    body = notice.body(erasure(), "mailer-inc", uuid.uuid4())
    headers = signing.signed_headers(secret, "delivery-1", body, datetime.now(UTC))

    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "delivery-1"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(signing.secret_text(secret)).verify(body, headers) == json.loads(body)


def test_a_signature_covers_the_id_the_timestamp_and_the_body() -> None:
    secret = signing.new_secret()
    receiver = Webhook(signing.secret_text(secret))
    headers = signing.signed_headers(secret, "delivery-1", '{"a":1}', datetime.now(UTC))
    for tampered_body, tampered in [
        ('{"a":2}', headers),
        ('{"a":1}', {**headers, "webhook-id": "delivery-2"}),
        ('{"a":1}', {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}),
    ]:
        with pytest.raises(WebhookVerificationError):
            receiver.verify(tampered_body, tampered)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.secret_text(signing.new_secret())).verify('{"a":1}', headers)


def test_the_timestamp_is_the_signing_moment_in_whole_seconds_whatever_the_time_zone() -> None:
    secret = signing.new_secret()
    moment = datetime.now(timezone(timedelta(hours=2))).replace(microsecond=987_654)
    headers = signing.signed_headers(secret, "d", "{}", moment)
    assert headers["webhook-timestamp"] == str(int(moment.timestamp()))
    Webhook(signing.secret_text(secret)).verify("{}", headers)  # raises if not


def test_the_secret_text_is_whsec_and_base64_of_32_random_bytes() -> None:
    first, second = signing.new_secret(), signing.new_secret()
    assert len(first) == 32 and first != second
    assert signing.secret_text(first).startswith("whsec_")


# Targets and bodies.


def test_recipients_with_and_without_endpoints_and_every_processor_are_targets() -> None:
    enabled = {"mailer-inc": "recipient", "payroll": "processor", "unrelated": "recipient"}
    planned = notice.plan(erasure(), enabled)
    assert [(p.recipient, p.status) for p in planned] == [
        ("courier-co", "no_endpoint"),
        ("mailer-inc", "pending"),
        ("payroll", "pending"),
    ]


def test_a_name_that_is_both_recipient_and_processor_is_told_once() -> None:
    planned = notice.plan(erasure(), {"mailer-inc": "processor"})
    assert [p.recipient for p in planned] == ["courier-co", "mailer-inc"]
    mailer = json.loads(planned[1].body)["data"]
    assert mailer["disclosure_event_ids"] == ["d-1", "d-3"]


def test_delivery_ids_are_stable_and_differ_per_tenant_request_and_target() -> None:
    one = notice.delivery_id("acme", "req-1", "mailer-inc")
    assert one == notice.delivery_id("acme", "req-1", "mailer-inc")
    assert [p.delivery_id for p in notice.plan(erasure(), {})] == [
        p.delivery_id for p in notice.plan(erasure(), {})
    ]
    others = {
        notice.delivery_id("globex", "req-1", "mailer-inc"),
        notice.delivery_id("acme", "req-2", "mailer-inc"),
        notice.delivery_id("acme", "req-1", "payroll"),
    }
    assert one not in others and len(others) == 3


def test_the_body_names_the_erasure_by_ids_and_times_only() -> None:
    did = uuid.uuid4()
    body = json.loads(notice.body(erasure(), "mailer-inc", did))
    assert body == {
        "type": "subject.erased",
        "timestamp": "2026-03-01T09:30:00Z",
        "data": {
            "delivery_id": str(did),
            "tenant": "acme",
            "subject_id": str(SUBJECT),
            "request_event_id": "req-1",
            "requested_at": "2026-03-01T09:25:00Z",
            "erased_at": "2026-03-01T09:30:00Z",
            "recipient": "mailer-inc",
            "disclosure_event_ids": ["d-1", "d-3"],
            "ledger_sequence": 42,
        },
    }
    processor = json.loads(notice.body(erasure(), "payroll", did))
    assert processor["data"]["disclosure_event_ids"] == []


# Reading the ledger topic.


def shredded_record(sequence: int = 7) -> dict[str, Any]:
    envelope = {
        "event_id": "shredded:x",
        "tenant": "acme",
        "subject_ref": None,
        "occurred_at": ERASED_AT - timedelta(minutes=5),
        "producer": "ledger",
        "schema_version": 1,
    }
    body = {"envelope": envelope, "request_event_id": "req-1", "disclosed_to": {"bank": ["d"]}}
    return {
        "sequence": sequence,
        "event_type": "KeysShredded",
        "aggregate_id": str(SUBJECT),
        "aggregate_version": 5,
        "tenant": "acme",
        "recorded_at": ERASED_AT,
        "event": ("compliance.KeysShredded", body),
    }


def kafka_record(value: bytes, event_type: str | None) -> Any:
    headers = [] if event_type is None else [("event_type", event_type.encode())]
    return SimpleNamespace(value=value, headers=headers, partition=0, offset=3)


def test_a_keys_shredded_record_becomes_an_erasure() -> None:
    value = avro.encode("LedgerRecord", shredded_record())
    for header in ("KeysShredded", None):
        found = erasure_of(kafka_record(value, header))
        assert found == notice.Erasure(
            tenant="acme",
            subject_id=SUBJECT,
            request_event_id="req-1",
            sequence=7,
            requested_at=ERASED_AT - timedelta(minutes=5),
            erased_at=ERASED_AT,
            disclosed_to={"bank": ("d",)},
        )


def test_a_change_notice_record_becomes_a_change_notice_with_its_own_body() -> None:
    record = shredded_record()
    envelope = dict(record["event"][1]["envelope"], event_id="notice:x")
    body = {
        "envelope": envelope,
        "about_event_id": "fix-1",
        "change": "rectified",
        "disclosed_to": {"bank": ["d"]},
    }
    record.update(event_type="ChangeNoticeDue", event=("compliance.ChangeNoticeDue", body))
    found = erasure_of(kafka_record(avro.encode("LedgerRecord", record), "ChangeNoticeDue"))
    assert found is not None and not found.is_erasure
    assert (found.notice_type, found.request_event_id) == ("subject.rectified", "fix-1")
    did = uuid.uuid4()
    sent = json.loads(notice.body(found, "bank", did))
    assert sent["type"] == "subject.rectified"
    assert sent["data"] == {
        "delivery_id": str(did),
        "tenant": "acme",
        "subject_id": str(SUBJECT),
        "event_id": "fix-1",
        "changed_at": "2026-03-01T09:25:00Z",
        "recorded_at": "2026-03-01T09:30:00Z",
        "recipient": "bank",
        "disclosure_event_ids": ["d"],
        "ledger_sequence": 7,
    }


def test_other_records_are_skipped_by_their_header_without_decoding() -> None:
    assert erasure_of(kafka_record(b"not avro at all", "ConsentGranted")) is None


def test_an_unreadable_record_that_may_be_an_erasure_is_not_skipped() -> None:
    for header in ("KeysShredded", None):
        with pytest.raises(UnreadableRecord, match="partition 0 offset 3"):
            erasure_of(kafka_record(b"\xc3\x01garbage!", header))


# Endpoint rules.


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "example.com/hook",
        "https://",
        "https://user:pw@example.com/hook",
        "https://example.com/hook#frag",
        "https://example.com:99999/hook",
        "https://exa mple.com/hook",
        "https://example.com/" + "x" * 2100,
    ],
)
def test_an_endpoint_url_must_be_plain_http_or_https_with_a_host(url: str) -> None:
    with pytest.raises(endpoints.InvalidEndpoint):
        endpoints.check_url(url)


def test_good_urls_pass_and_plain_http_is_flagged() -> None:
    assert endpoints.check_url(" https://hooks.example.com:8443/erasure?x=1 ").startswith("https")
    assert endpoints.is_plain_http(endpoints.check_url("http://127.0.0.1:8080/hook"))
    assert not endpoints.is_plain_http("https://hooks.example.com/")


def test_secrets_are_bound_to_their_tenant_and_name_unambiguously() -> None:
    assert endpoints.secret_context("ab", "c") != endpoints.secret_context("a", "bc")
    with pytest.raises(endpoints.InvalidEndpoint):
        endpoints.check_name("a\x00b")  # names are printable, so the separator is unambiguous
