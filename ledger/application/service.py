"""The ledger application: records validated facts, a batch per transaction.

Rules this module keeps:

- **One transaction per batch.** Every event, new subject key, reference lookup and
  idempotency receipt a batch produces is written in one `eventsourcing` save, or none is.
- **Idempotent on (tenant, event_id).** A command whose receipt exists, or that repeats an
  earlier command of the same batch, is reported ``duplicate`` and records nothing.
- **Refusals are outcomes, not exceptions.** A rule violation refuses that command only;
  the rest of the batch is recorded. A refused command changes no aggregate.
- **Stale caches never decide.** Aggregates are cached in process but caught up with the
  store before each batch; a writer racing between that read and the save makes the save fail
  on the (aggregate, version) key, and the batch is re-run from fresh state.
- **Personal values are sealed before any event exists**, with the subject's data key.
- **The tenant's ingest policy decides first.** A command whose personal fields arrived in
  clear on the ingest topic is refused (``plaintext_personal_data``) unless its tenant allows
  that; fields producers sealed were opened by the contract with :attr:`Ledger.ingest_keys`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, JSONTranscoder
from eventsourcing.postgres import PostgresDatastore, PostgresFactory
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from ledger.application.batch import (
    BATCH_ATTEMPTS,
    ERASURE_COMMANDS,
    EXISTING_SUBJECT_ONLY,
    SUBJECT_COMMANDS,
    Outcome,
    _Batch,
)
from ledger.domain.rules import (
    RuleViolation,
    SubjectErased,
    TenantExists,
    UnknownSubject,
    UnknownTenant,
)
from ledger.domain.subject import Subject
from ledger.domain.tenant import Tenant
from ledger.domain.values import Sealed
from ledger.keys.crypto import KeyEncryptionKey
from ledger.keys.ingest_keys import (
    DEFAULT_RETENTION,
    DEFAULT_SESSION_MAX_AGE,
    DEFAULT_SESSION_MAX_MESSAGES,
    IngestKeyring,
    IngestKeyTable,
    MemoryIngestKeyTable,
)
from ledger.keys.ingest_keys_postgres import PostgresIngestKeyTable
from ledger.keys.keystore import KeyStore
from ledger.storage import pg_session
from ledger.storage.memory import InMemoryLedgerRecorder
from ledger.storage.postgres import PostgresLedgerRecorder, connect_direct
from ledger.storage.store import LedgerStore, Receipt, Shredded, SubjectRef
from ledger.storage.transcodings import LegalBasisAsName, SealedAsDict
from ledger.wire.contract import Command

SUBJECT_CACHE_SIZE = 50_000
SHREDDED_TOPIC = get_topic(Subject.KeysShredded)
EVENTS_TABLE = "ledger_events"  # in the ledger's schema
SHRED_PAGE = 1_000


class LedgerReader(Application[UUID]):
    """The ledger's events and notification log, without keys: what the projection runners
    and the relay need. It decrypts nothing and records nothing."""

    name = "Ledger"

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        self.store: LedgerStore = self.recorder  # type: ignore[assignment]

    def construct_recorder(self) -> Any:
        factory = self.factory
        if not isinstance(factory, PostgresFactory):
            return InMemoryLedgerRecorder()
        write_ms = int(self.env.get(pg_session.WRITE_TIMEOUT_MS) or 60_000)
        recorder = PostgresLedgerRecorder(
            factory.datastore, events_table_name=EVENTS_TABLE, write_timeout_s=write_ms / 1000
        )
        with _schema_lock(factory.datastore) as conn:
            pg_session.configure(factory.datastore.pool.kwargs, self.env, conn.info.server_version)
            factory.datastore.pool.drain()  # connections made before get the options too
            schema = Identifier(factory.datastore.schema)
            conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            recorder.create_table()
        return recorder

    def close(self) -> None:
        if isinstance(self.store, PostgresLedgerRecorder):
            self.store.close_connections()
        super().close()

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(SealedAsDict())
        transcoder.register(LegalBasisAsName())


class Ledger(LedgerReader):
    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        kek: KeyEncryptionKey,
        lookup_key: bytes,
        ingest_retention: timedelta = DEFAULT_RETENTION,
        ingest_session_max_messages: int = DEFAULT_SESSION_MAX_MESSAGES,
        ingest_session_max_age: timedelta = DEFAULT_SESSION_MAX_AGE,
        subject_cache_size: int = SUBJECT_CACHE_SIZE,
    ) -> None:
        super().__init__(env)
        self.subject_cache_size = subject_cache_size
        self.keys = KeyStore(self.store, kek, lookup_key, cache_size=subject_cache_size)
        self.ingest_keys = IngestKeyring(
            _ingest_key_table(self.factory),
            kek,
            lookup_key,
            retention=ingest_retention,
            session_max_messages=ingest_session_max_messages,
            session_max_age=ingest_session_max_age,
        )
        self._tenants: dict[str, Tenant] = {}
        self._subjects: OrderedDict[UUID, Subject] = OrderedDict()
        self._shreds_seen = self.store.max_notification_id() or 0

    # Tenants.

    def register_tenant(
        self, code: str, name: str, *, allow_plaintext_ingest: bool = False
    ) -> Tenant:
        try:
            self.repository.get(Tenant.id_for(code))
        except AggregateNotFoundError:
            tenant = Tenant.register(code, name, allow_plaintext_ingest=allow_plaintext_ingest)
            self.save(tenant)
            return tenant
        raise TenantExists(f"tenant {code!r} is already registered")

    def set_ingest_policy(self, code: str, *, allow_plaintext_ingest: bool) -> bool:
        """Records the tenant's plaintext ingest policy; False if it was already so."""
        return self._change_tenant(
            code, lambda t: t.set_ingest_policy(allow_plaintext_ingest=allow_plaintext_ingest)
        )

    def set_subject_reports(self, code: str, *, allow: bool) -> bool:
        """Records whether the tenant's portal may request subject access reports on the
        subject's behalf; False if it was already so."""
        return self._change_tenant(code, lambda t: t.set_subject_reports(allow=allow))

    def _change_tenant(self, code: str, change: Callable[[Tenant], bool]) -> bool:
        """Applies ``change`` to the tenant as recorded and saves it if it changed anything."""
        tenant = self.tenant(code)
        if not change(tenant):
            return False
        try:
            self.save(tenant)
        except BaseException:
            self._tenants.pop(code, None)  # the cached tenant is ahead of the database
            raise
        return True

    def tenant(self, code: str) -> Tenant:
        """The tenant as recorded, including events other processes recorded."""
        self._refresh_tenants({code})
        try:
            return self._tenants[code]
        except KeyError:
            raise UnknownTenant(f"tenant {code!r} is not registered") from None

    def _refresh_tenants(self, codes: Iterable[str]) -> None:
        for code in codes:
            tenant = self._tenants.get(code)
            if tenant is None:
                try:
                    self._tenants[code] = self.repository.get(Tenant.id_for(code))
                except AggregateNotFoundError:
                    continue
            else:
                for event in self.events.get(tenant.id, gt=tenant.version):
                    event.mutate(tenant)  # type: ignore[attr-defined]

    # Subjects.

    def find_subject(self, tenant: str, subject_ref: str) -> Subject | None:
        digest = self.keys.digest(tenant, subject_ref)
        found = self.store.lookup_subjects(tenant, [digest])
        if digest not in found:
            return None
        return self._load_subjects([found[digest]]).get(found[digest])

    def reference_erased(self, tenant: str, subject_ref: str) -> bool:
        digest = self.keys.digest(tenant, subject_ref)
        return bool(self.store.erased_refs(tenant, [digest]))

    def subject_events(self, subject_id: UUID) -> list[Any]:
        """Every recorded event of a subject, personal fields still sealed."""
        return list(self.events.get(subject_id))

    def _load_subjects(self, ids: Iterable[UUID]) -> dict[UUID, Subject]:
        """The subjects as recorded now: cached ones are caught up with events that other
        processes recorded since (e.g. after a consumer-group rebalance), in one query."""
        wanted = list(dict.fromkeys(ids))
        out = {i: self._subjects[i] for i in wanted if i in self._subjects}
        after = {i: subject.version for i, subject in out.items()}
        for stored_event in self.store.select_aggregates_events(wanted, after):
            event = self.mapper.to_domain_event(stored_event)
            subject_id = stored_event.originator_id
            assert isinstance(subject_id, UUID)
            out[subject_id] = event.mutate(out.get(subject_id))  # type: ignore[attr-defined]
        self._cache_subjects(out.values())
        return out

    def _cache_subjects(self, subjects: Iterable[Subject]) -> None:
        for subject in subjects:
            self._subjects[subject.id] = subject
            self._subjects.move_to_end(subject.id)
        while len(self._subjects) > self.subject_cache_size:
            self._subjects.popitem(last=False)

    def record_notification(
        self, subject_id: UUID, deliveries: list[dict[str, object]], at: datetime
    ) -> bool:
        """Records that the processors were told of the subject's erasure, and its completion.
        False if that is already recorded (a notifier re-running after a crash)."""
        subject = self._load_subjects([subject_id]).get(subject_id)
        if subject is None:
            raise UnknownSubject(f"no subject {subject_id}")
        if subject.processors_notified:
            return False
        subject.record_notification(deliveries, at)
        try:
            self.save(subject)
        except BaseException:
            self._subjects.pop(subject_id, None)
            raise
        return True

    def record_report(self, tenant: str, subject_id: UUID, **fields: object) -> None:
        """Records that a subject access report was generated (``Subject.record_report``), by
        subject id: an erased subject's reference no longer leads to it."""
        subject = self._load_subjects([subject_id]).get(subject_id)
        if subject is None or subject.tenant != tenant:
            raise UnknownSubject(f"tenant {tenant!r} has no subject {subject_id}")
        subject.record_report(tenant=tenant, **fields)
        try:
            self.save(subject)
        except BaseException:
            self._subjects.pop(subject_id, None)
            raise

    # Recording.

    def record(self, commands: Sequence[Command]) -> list[Outcome]:
        """Records a batch in one transaction; returns one outcome per command, in order."""
        for attempt in range(BATCH_ATTEMPTS):
            try:
                return self._record_once(commands)
            except IntegrityError:
                if attempt + 1 == BATCH_ATTEMPTS and len(commands) == 1:
                    raise
        # Persistent conflicts in a batch: fall back to one transaction per command.
        return [self.record([command])[0] for command in commands]

    def forget_shredded_elsewhere(self) -> int:
        """Drops from this process's caches the data keys (and loaded subjects) that another
        process shredded since the last call; returns how many. Every batch calls it first and
        an idle ingest consumer about once a second, so a data key does not outlive its shred
        in this process's memory by more than that."""
        head = self.store.max_notification_id() or 0
        gone: list[UUID] = []
        start = self._shreds_seen + 1
        while start <= head:
            page = self.store.select_notifications(
                start, limit=SHRED_PAGE, stop=head, topics=[SHREDDED_TOPIC]
            )
            gone += [UUID(str(n.originator_id)) for n in page]
            if len(page) < SHRED_PAGE:
                break
            start = page[-1].id + 1
        self.keys.forget(gone)
        for subject_id in gone:
            self._subjects.pop(subject_id, None)
        self._shreds_seen = max(self._shreds_seen, head)
        return len(gone)

    def _record_once(self, commands: Sequence[Command]) -> list[Outcome]:
        self.forget_shredded_elsewhere()
        keys = [(c.envelope.tenant, c.envelope.event_id) for c in commands]
        batch = _Batch(seen=self.store.recorded_receipts(keys))
        self._refresh_tenants({c.envelope.tenant for c in commands})
        subjects = self._subjects_for(commands, batch)
        outcomes = [self._apply(c, batch, subjects) for c in commands]
        aggregates = batch.aggregates()
        if not aggregates:
            return outcomes
        new_subjects = batch.saved_new_subjects()
        try:
            self.save(
                *aggregates,
                new_keys=[key for key, _ in new_subjects],
                new_refs=[ref for _, ref in new_subjects],
                receipts=batch.receipts,
                shredded=batch.shredded,
            )
        except BaseException:
            self._forget(batch)
            raise
        self.keys.forget([gone.subject_id for gone in batch.shredded])
        self._cache_subjects(a for a in aggregates if isinstance(a, Subject))
        return outcomes

    def _forget(self, batch: _Batch) -> None:
        """After a failed save, in-memory aggregates are ahead of the database: drop them."""
        for aggregate in batch.touched.values():
            self._subjects.pop(aggregate.id, None)
            if isinstance(aggregate, Tenant):
                self._tenants.pop(aggregate.code, None)
        self.keys.forget(list(batch.new_subjects))

    def _subjects_for(
        self, commands: Sequence[Command], batch: _Batch
    ) -> dict[tuple[str, bytes], Subject]:
        digests: dict[str, set[bytes]] = {}
        for c in commands:
            if c.envelope.subject_ref is not None:
                digest = self.keys.digest(c.envelope.tenant, c.envelope.subject_ref)
                digests.setdefault(c.envelope.tenant, set()).add(digest)
        ids: dict[tuple[str, bytes], UUID] = {}
        for tenant, tenant_digests in digests.items():
            found = self.store.lookup_subjects(tenant, list(tenant_digests))
            ids.update({(tenant, d): i for d, i in found.items()})
            unknown = [d for d in tenant_digests if d not in found]
            batch.erased.update((tenant, d) for d in self.store.erased_refs(tenant, unknown))
        loaded = self._load_subjects(ids.values())
        self.keys.data_keys(loaded)  # warm the key cache in one query, not one per subject
        return {k: loaded[i] for k, i in ids.items() if i in loaded}

    def _apply(
        self, cmd: Command, batch: _Batch, subjects: dict[tuple[str, bytes], Subject]
    ) -> Outcome:
        env = cmd.envelope
        key = (env.tenant, env.event_id)
        if key in batch.seen:
            return Outcome("duplicate")
        try:
            tenant = self._tenants.get(env.tenant)
            if tenant is None:
                raise UnknownTenant(f"tenant {env.tenant!r} is not registered")
            tenant.check_ingest_policy(cmd.plaintext_fields)
            if cmd.kind == "PurposeDefined":
                aggregate: Aggregate = tenant
                tenant.define_purpose(**cmd.facts, **_envelope_fields(cmd))
            else:
                aggregate = self._apply_to_subject(cmd, tenant, batch, subjects)
        except RuleViolation as violation:
            return Outcome("rejected", violation.code, violation.detail)
        batch.seen.add(key)
        batch.touched[aggregate.id] = aggregate
        batch.receipts.append(Receipt(env.tenant, env.event_id, aggregate.id, aggregate.version))
        return Outcome("recorded", aggregate_id=aggregate.id, version=aggregate.version)

    def _apply_to_subject(
        self,
        cmd: Command,
        tenant: Tenant,
        batch: _Batch,
        subjects: dict[tuple[str, bytes], Subject],
    ) -> Subject:
        assert cmd.envelope.subject_ref is not None
        lookup = (tenant.code, self.keys.digest(tenant.code, cmd.envelope.subject_ref))
        subject = subjects.get(lookup)
        if subject is None:
            if lookup in batch.erased:
                raise SubjectErased("this reference belongs to an erased subject")
            if cmd.kind in EXISTING_SUBJECT_ONLY:
                raise UnknownSubject(f"tenant {tenant.code!r} has no such subject")
            subject = self._new_subject(tenant.code, lookup[1], cmd.envelope.subject_ref, batch)
            subjects[lookup] = subject
        data_key = self.keys.data_key(subject.id)
        if data_key is None:
            subject.check_not_erased()
            raise UnknownSubject(f"subject {subject.id} has no data key")
        sealed = self._seal(data_key, subject.id, cmd)
        facts = {k: v for k, v in cmd.facts.items() if k not in ("purpose", "purposes")}
        fields = {**facts, **sealed, **_envelope_fields(cmd)}
        if cmd.kind == "ProcessingRestricted":
            purposes = [tenant.purpose(code) for code in cmd.facts["purposes"]]
            subject.restrict_processing(purposes, **fields)
            return subject
        if cmd.kind == "ErasureRequested":
            if subject.request_erasure(**fields):
                batch.shredded.append(Shredded(tenant.code, subject.id))
            return subject
        if cmd.kind in ERASURE_COMMANDS:
            getattr(subject, ERASURE_COMMANDS[cmd.kind])(**fields)
            return subject
        purpose = tenant.purpose(cmd.facts["purpose"])
        command: Callable[..., None] = getattr(subject, SUBJECT_COMMANDS[cmd.kind])
        command(purpose, **fields)
        return subject

    def _seal(self, data_key: bytes, subject_id: UUID, cmd: Command) -> dict[str, Sealed | None]:
        """The command's personal values sealed with the subject's key, each bound to its
        field — a rectification's new value to the field it corrects, so that it opens
        wherever that field's value does."""
        if cmd.kind != "PersonalDataRectified":
            return self.keys.seal(data_key, subject_id, cmd.personal)
        field = cmd.facts["field"]
        values = {"reason": cmd.personal.get("reason"), field: cmd.personal.get("value")}
        sealed = self.keys.seal(data_key, subject_id, values)
        return {"reason": sealed["reason"], "value": sealed[field]}

    def _new_subject(self, tenant: str, digest: bytes, ref: str, batch: _Batch) -> Subject:
        """A subject with a random id; it is saved only if one of its commands is recorded."""
        subject_id = Subject.create_id()
        data_key, wrapped = self.keys.create(subject_id, tenant)
        sealed_ref = self.keys.seal(data_key, subject_id, {"subject_ref": ref})["subject_ref"]
        assert sealed_ref is not None
        batch.new_subjects[subject_id] = (wrapped, SubjectRef(tenant, digest, subject_id))
        return Subject.register(subject_id, tenant, sealed_ref)


def _ingest_key_table(factory: Any) -> IngestKeyTable:
    if isinstance(factory, PostgresFactory):
        return PostgresIngestKeyTable(factory.datastore)
    return MemoryIngestKeyTable()


@contextmanager
def _schema_lock(datastore: PostgresDatastore) -> Iterator[psycopg.Connection[Any]]:
    """Serialises schema creation: processes starting together (ingest and relay) would
    otherwise race on the same DDL and fail with "tuple concurrently updated"."""
    with connect_direct(datastore) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"ledger:{datastore.schema}"])
        yield conn


def _envelope_fields(cmd: Command) -> dict[str, Any]:
    env = cmd.envelope
    return {
        "event_id": env.event_id,
        "occurred_at": env.occurred_at,
        "producer": env.producer,
        "tenant": env.tenant,
    }
