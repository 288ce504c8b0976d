"""``ledger bench freshness``: from a withdrawal produced on Kafka to the API saying "no".

``ledger ingest``, ``ledger project`` and ``ledger serve`` run as their own processes on a
fresh schema and fresh topics. Each sample subject is first granted the bench purpose through
Kafka; once the API allows every one of them, each is withdrawn in turn: the clock starts
just before the producer sends the withdrawal and stops when a purpose check (asked every
``POLL_S``) answers refused. The figure therefore includes the producer's linger, the ingest
consumer's fetch, the ledger transaction, LISTEN/NOTIFY, the view transaction and the HTTP
request that sees it.

The baseline is the Kafka hop alone in the same run: a message produced to a scratch topic
until a consumer with the ingest consumer's settings has it — the part no ledger code runs in.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid

from ledger.bench.load import Summary
from ledger.bench.query import api_key
from ledger.bench.setup import PURPOSE, TENANT, ingest_key, processes, wait_for_api
from ledger.client import LedgerClient
from ledger.kafka.admin import default_partitions, ensure_topics
from ledger.kafka.consumer import make_consumer
from ledger.kafka.producer import make_producer
from ledger.settings import Settings, Topics
from projections.api.app import prepare

POLL_S = 0.002
SAMPLE_TIMEOUT_S = 10.0
TARGET_P99_S = 1.0


class Checker:
    """Asks the purpose check over one keep-alive connection."""

    def __init__(self, s: Settings, token: str) -> None:
        self.conn = http.client.HTTPConnection(s.api_host, s.api_port, timeout=10)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def allowed(self, ref: str) -> bool:
        body = json.dumps({"subject_ref": ref, "purpose": PURPOSE})
        self.conn.request("POST", "/v1/purpose-check", body, self.headers)
        response = self.conn.getresponse()
        answer = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"purpose check answered HTTP {response.status}")
        return bool(answer["allowed"])

    def wait(self, ref: str, allowed: bool, timeout_s: float) -> float | None:
        """The ``perf_counter`` time the answer was ``allowed``, or None on timeout."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout_s:
            if self.allowed(ref) is allowed:
                return time.perf_counter()
            time.sleep(POLL_S)
        return None


def with_topics(s: Settings) -> Settings:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    topics = Topics(f"{prefix}.ingest", f"{prefix}.rejected", f"{prefix}.ledger")
    ensure_topics(s.require_kafka(), default_partitions(topics))
    return s.with_overrides(topics=topics, ingest_group=f"{prefix}-ingest")


def kafka_hop(s: Settings, samples: int) -> Summary:
    """Produce → a subscribed consumer has it, with the ledger's producer and consumer settings."""
    topic = f"{s.topics.ingest}.probe"
    bootstrap = s.require_kafka()
    ensure_topics(bootstrap, {topic: 1})
    producer = make_producer(bootstrap)
    consumer = make_consumer(bootstrap, group=f"{topic}-group")
    try:
        consumer.subscribe([topic])
        while not consumer.assignment():
            consumer.poll(timeout_ms=200)
        latencies = []
        for i in range(samples):
            started = time.perf_counter()
            producer.send(topic, value=str(i).encode()).get(timeout=10)
            while not consumer.poll(timeout_ms=1000):
                pass
            latencies.append(time.perf_counter() - started)
        return Summary.of(latencies)
    finally:
        consumer.close()
        producer.close()


def run(s: Settings, *, samples: int) -> None:
    s = with_topics(s)
    prepare(s)
    token = api_key(s)
    refs = [f"fresh-{uuid.uuid4().hex[:8]}-{i}@example.com" for i in range(samples)]
    with processes(s, ["ingest", "project", "serve"]) as live:
        wait_for_api(live)
        checker = Checker(live, token)
        with LedgerClient(
            s.require_kafka(), producer="bench", topic=s.topics.ingest, ingest_key=ingest_key(s)
        ) as client:
            grant_all(client, checker, refs)
            latencies, misses = withdraw_each(client, checker, refs)
    hop = kafka_hop(s, samples)
    report(Summary.of(latencies, misses, "no answer within 10 s") if latencies else None, hop)


def grant_all(client: LedgerClient, checker: Checker, refs: list[str]) -> None:
    for ref in refs:
        client.grant_consent(
            tenant=TENANT,
            subject_ref=ref,
            purpose=PURPOSE,
            consent_text_version="1",
            source="bench",
        )
    client.flush()
    for ref in refs:  # the first answer also waits for the ingest group to form
        if checker.wait(ref, True, timeout_s=120) is None:
            raise RuntimeError("the grants did not reach the API within 120 s")


def withdraw_each(
    client: LedgerClient, checker: Checker, refs: list[str]
) -> tuple[list[float], int]:
    latencies: list[float] = []
    misses = 0
    for ref in refs:
        started = time.perf_counter()
        client.withdraw_consent(tenant=TENANT, subject_ref=ref, purpose=PURPOSE, source="bench")
        client.flush()
        answered = checker.wait(ref, False, SAMPLE_TIMEOUT_S)
        if answered is None:
            misses += 1
        else:
            latencies.append(answered - started)
        time.sleep(0.05)  # samples apart, so each one sees an idle pipeline
    return latencies, misses


def report(fresh: Summary | None, hop: Summary) -> None:
    print(f"freshness: withdrawal produced -> purpose check answers no ({hop.count} samples)")
    if fresh is None:
        print("  no withdrawal reached the API: target NOT met")
        return
    print(f"  Kafka -> ingest -> ledger -> view -> API   {fresh.line()}")
    print(f"  baseline: Kafka hop alone                  {hop.line()}")
    verdict = "met" if fresh.p99_s <= TARGET_P99_S and not fresh.errors else "NOT met"
    print(f"  target p99 <= {TARGET_P99_S:.0f} s: {verdict}")
