"""Configuration, read once from environment variables.

Every value has one name (``LEDGER_*``), one parser and one error message that says what is
wrong and what would be right. Secrets (the key-encryption key, the lookup key) are never
echoed in errors or logs.

Where no database or broker is configured, commands fall back to the ones a running
``ledger dev`` wrote into its state file (``$LEDGER_DATA_DIR/dev.json``), so a newcomer can
run ``ledger demo`` in a second terminal without exporting anything.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from limits import parse_many
from psycopg.conninfo import conninfo_to_dict

from ledger.kafka import security as kafka_security
from ledger.kafka.security import KafkaSecurity
from ledger.kafka.topics import TopicReplication, Topics
from ledger.keys import kek as kek_config
from ledger.plumbing.errors import ConfigError
from ledger.plumbing.secret_files import SettingError, secret
from ledger.storage import pg_session

_MS = timedelta(milliseconds=1)
DEFAULT_DATA_DIR = ".ledger"
DEV_STATE_FILE = "dev.json"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Settings:
    database_url: str | None = field(repr=False)  # may hold a password
    database_schema: str
    kafka_bootstrap: str | None
    topics: Topics
    kek: bytes | None = field(repr=False)
    kek_id: str
    lookup_key: bytes | None = field(repr=False)
    data_dir: Path
    log_format: str
    ingest_group: str
    ingest_batch_size: int
    relay_batch_size: int
    # How long a consumer's fetch may wait at the broker for data: Apache Kafka answers a
    # waiting fetch as soon as data arrives, the development broker only when it times out.
    kafka_fetch_wait_ms: int = 100
    api_workers: int = 1
    # References whose purpose-check answers each API process keeps in memory (0: none).
    purpose_cache_subjects: int = 50_000
    api_host: str = "127.0.0.1"
    api_port: int = 8600
    retention_disclosures: timedelta = timedelta(days=365)
    retention_collections: timedelta = timedelta(days=365)
    ready_max_lag: int = 1000
    projection_batch_size: int = 500
    subject_cache_size: int = 50_000  # subjects a recording process keeps loaded (LRU)
    ingest_retention: timedelta = timedelta(days=7)
    # Bounds of a sealed-ingest v2 session (``ledger.keys.ingest_keys``).
    ingest_session_max_messages: int = 100_000
    ingest_session_max_age: timedelta = timedelta(hours=1)
    # Larger ingest messages are rejected undecoded (``consumers.ingest``).
    ingest_max_message_bytes: int = 256 * 1024
    # Previous KEK versions, (id, key), that still unwrap (``ledger.keys.kek``).
    kek_previous: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)
    # Erasure webhooks (``ledger notify``).
    notifier_group: str = "ledger-notifier"
    webhook_max_attempts: int = 16
    webhook_retry_base: timedelta = timedelta(seconds=2)
    webhook_retry_max: timedelta = timedelta(hours=1)
    webhook_timeout: timedelta = timedelta(seconds=10)
    # Signed checkpoints (``ledger.integrity``): the Ed25519 private key and how often.
    checkpoint_key: bytes | None = field(default=None, repr=False)
    # Signs consent receipts and erasure certificates (``ledger.integrity.documents``); the
    # API holds it, so it is not the checkpoint key. Unset: the checkpoint key, if any.
    document_key: bytes | None = field(default=None, repr=False)
    checkpoint_every: int = 10_000
    checkpoint_interval: timedelta = timedelta(minutes=10)
    # The Merkle log's identity in its C2SP checkpoints, and the witnesses that cosign them:
    # (vkey, submission URL) pairs, parsed by ``ledger.integrity.witnesses``.
    log_origin: str = "compliance-ledger"
    witnesses: tuple[tuple[str, str], ...] = ()
    witness_quorum: int = 0
    kafka_replication: TopicReplication = field(default_factory=TopicReplication)
    # TLS and SASL of every Kafka client (``ledger.kafka.security``).
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    # Auditor replays (``projections.replay``): how long a finished one is kept.
    replay_ttl: timedelta = timedelta(hours=24)
    # The browser interfaces (``projections.web``): a session ends after ``web_session_idle``
    # without a request or ``web_session_max`` after it began; a privacy-center link is good
    # once, for ``privacy_link_ttl``; failed console sign-ins are limited per client.
    web_session_idle: timedelta = timedelta(minutes=15)
    web_session_max: timedelta = timedelta(hours=8)
    privacy_link_ttl: timedelta = timedelta(minutes=5)
    signin_limit: str = "5/minute;20/hour"
    # Origins whose pages may frame the privacy center (its CSP frame-ancestors); none: no
    # framing at all, and the privacy cookie is SameSite=Lax rather than a partitioned one.
    privacy_frame_ancestors: tuple[str, ...] = ()
    # Stopping (``ledger.cli.common.stop_on_signals``): how long a process may take to finish
    # the batch in hand after SIGTERM before it exits anyway, and how long ``ledger serve``
    # keeps serving with /readyz at 503 before it stops accepting connections.
    shutdown_grace: timedelta = timedelta(seconds=20)
    shutdown_drain: timedelta = timedelta(0)
    # Bounds of the ledger's PostgreSQL sessions (``ledger.storage.pg_session``,
    # ``ledger.storage.write_watch``): a write transaction open longer than ``write_timeout``
    # is ended and its batch run again.
    write_timeout: timedelta = timedelta(seconds=60)
    statement_timeout: timedelta = timedelta(seconds=30)
    lock_timeout: timedelta = timedelta(seconds=10)
    idle_transaction_timeout: timedelta = timedelta(seconds=10)

    def require_database(self) -> str:
        if not self.database_url:
            raise ConfigError(
                "no database configured: set LEDGER_DATABASE_URL "
                "(e.g. postgresql://user@host:5432/ledger) or start `ledger dev`"
            )
        return self.database_url

    def require_kafka(self) -> str:
        if not self.kafka_bootstrap:
            raise ConfigError(
                "no Kafka broker configured: set LEDGER_KAFKA_BOOTSTRAP "
                "(e.g. kafka1:9092,kafka2:9092) or start `ledger dev`"
            )
        return self.kafka_bootstrap

    def require_keys(self) -> tuple[bytes, bytes]:
        if self.kek is None or self.lookup_key is None:
            raise ConfigError(
                "no keys configured: set LEDGER_KEK and LEDGER_LOOKUP_KEY "
                "(each 32 random bytes, base64; `ledger keys generate` prints a pair) "
                "or start `ledger dev`"
            )
        return self.kek, self.lookup_key

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def eventsourcing_env(self) -> dict[str, str]:
        """The environment the `eventsourcing` Postgres factory reads."""
        params = conninfo_to_dict(self.require_database())
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
            "POSTGRES_HOST": str(params.get("host") or "127.0.0.1"),
            "POSTGRES_PORT": str(params.get("port") or "5432"),
            "POSTGRES_USER": str(params.get("user") or "postgres"),
            "POSTGRES_PASSWORD": str(params.get("password") or ""),
            "POSTGRES_SCHEMA": self.database_schema,
            "POSTGRES_POOL_SIZE": "2",
            "POSTGRES_MAX_OVERFLOW": "4",
            "POSTGRES_LOCK_TIMEOUT": str(int(self.lock_timeout.total_seconds())),
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": str(
                int(self.idle_transaction_timeout.total_seconds())
            ),
            "POSTGRES_CONNECT_TIMEOUT": "10",
            "CREATE_TABLE": "y",
            pg_session.STATEMENT_TIMEOUT_MS: str(int(self.statement_timeout / _MS)),
            pg_session.WRITE_TIMEOUT_MS: str(int(self.write_timeout / _MS)),
        }


def _b64_key(name: str, raw: str | None) -> bytes | None:
    if raw is None or raw == "":
        return None
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{name} is not valid base64") from None
    if len(key) != 32:
        raise ConfigError(f"{name} must decode to 32 bytes, got {len(key)}")
    return key


def _positive_int(name: str, raw: str | None, default: int) -> int:
    return _whole(name, raw, default, minimum=1)


def _whole(name: str, raw: str | None, default: int, *, minimum: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


MAX_API_WORKERS = 64


def _api_workers(raw: str | None) -> int:
    workers = _positive_int("LEDGER_API_WORKERS", raw, 1)
    if workers > MAX_API_WORKERS:
        raise ConfigError(f"LEDGER_API_WORKERS must be at most {MAX_API_WORKERS}, got {workers}")
    return workers


def _optional_positive_int(name: str, raw: str | None) -> int | None:
    return None if raw is None or raw == "" else _positive_int(name, raw, 1)


_DURATION = re.compile(r"^(\d+)([dhms])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


_FRAMING_ORIGIN = re.compile(
    r"^(https://(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*|http://(localhost|127\.0\.0\.1))(:\d{1,5})?$"
)


def _frame_ancestors(raw: str | None) -> tuple[str, ...]:
    """Origins, separated by spaces or commas: ``https://host[:port]`` (``*.`` allowed before
    the host), or ``http://localhost``/``http://127.0.0.1`` for development."""
    origins = tuple(o for o in re.split(r"[\s,]+", (raw or "").strip().lower()) if o)
    for origin in origins:
        if not _FRAMING_ORIGIN.match(origin):
            raise ConfigError(
                f"LEDGER_PRIVACY_FRAME_ANCESTORS: {origin!r} is not an origin such as "
                "https://app.example.com (no path; http only for localhost)"
            )
    return origins


def _rate_limit(raw: str | None) -> str:
    """Limits in the ``limits`` library's notation, ``5/minute;20/hour``: each must hold."""
    if raw is None or raw.strip() == "":
        return "5/minute;20/hour"
    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(
            f"LEDGER_SIGNIN_LIMIT={raw!r}: use counts per period, such as 5/minute;20/hour"
        ) from None
    return raw.strip()


def _duration(name: str, raw: str | None, default: timedelta, *, zero: bool = False) -> timedelta:
    if raw is None or raw == "":
        return default
    match = _DURATION.match(raw.strip())
    if not match or (int(match[1]) == 0 and not zero):
        raise ConfigError(
            f"{name} must be a {'' if zero else 'positive '}whole number of days, hours, "
            "minutes or seconds "
            f"such as 365d or 12h, got {raw!r}"
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def _port(name: str, raw: str | None, default: int) -> int:
    value = _positive_int(name, raw, default)
    if value > 65535:
        raise ConfigError(f"{name} must be a TCP port (1-65535), got {value}")
    return value


def _choice(name: str, raw: str | None, choices: tuple[str, ...], default: str) -> str:
    value = (raw or default).lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _database_url(raw: str | None) -> str | None:
    if not raw:
        return None
    if not raw.startswith(("postgresql://", "postgres://")):
        raise ConfigError("LEDGER_DATABASE_URL must start with postgresql://")
    try:
        params = conninfo_to_dict(raw)
    except Exception:
        raise ConfigError("LEDGER_DATABASE_URL is not a valid PostgreSQL URL") from None
    port = str(params.get("port") or "5432")
    if not all(p.isdigit() for p in port.split(",")):
        raise ConfigError("LEDGER_DATABASE_URL has a port that is not a number")
    return raw


def _schema(raw: str | None) -> str:
    value = raw or "ledger"
    if not _SCHEMA_NAME.match(value):
        raise ConfigError(
            "LEDGER_DATABASE_SCHEMA must be a lower-case SQL identifier "
            f"(letters, digits, underscore), got {value!r}"
        )
    return value


def read_dev_state(data_dir: Path) -> dict[str, str]:
    path = data_dir / DEV_STATE_FILE
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: str(v) for k, v in state.items()} if isinstance(state, dict) else {}


def _keks(env: Mapping[str, str], explicit: Mapping[str, str]) -> kek_config.KekConfig | None:
    try:
        return kek_config.from_environment(env, explicit)
    except kek_config.KekConfigError as exc:
        raise ConfigError(str(exc)) from None


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Reads settings from ``environ`` (default: the process environment).

    Values a running ``ledger dev`` published fill in only what the environment leaves unset.
    """
    explicit = dict(os.environ if environ is None else environ)
    env = dict(explicit)
    data_dir = Path(env.get("LEDGER_DATA_DIR") or DEFAULT_DATA_DIR)
    for key, value in read_dev_state(data_dir).items():
        env.setdefault(key, value)
    keks = _keks(env, explicit)
    return Settings(
        database_url=_database_url(_with_password_file(env.get("LEDGER_DATABASE_URL"), env)),
        database_schema=_schema(env.get("LEDGER_DATABASE_SCHEMA")),
        kafka_bootstrap=env.get("LEDGER_KAFKA_BOOTSTRAP") or None,
        topics=Topics(
            ingest=env.get("LEDGER_TOPIC_INGEST") or Topics.ingest,
            rejected=env.get("LEDGER_TOPIC_REJECTED") or Topics.rejected,
            ledger=env.get("LEDGER_TOPIC_LEDGER") or Topics.ledger,
            checkpoints=env.get("LEDGER_TOPIC_CHECKPOINTS") or Topics.checkpoints,
        ),
        kek=keks.current if keks else None,
        kek_id=keks.current_id if keks else kek_config.DEFAULT_KEK_ID,
        kek_previous=keks.previous if keks else (),
        lookup_key=_lookup_key(env),
        data_dir=data_dir,
        log_format=_choice(
            "LEDGER_LOG_FORMAT", env.get("LEDGER_LOG_FORMAT"), ("auto", "json", "console"), "auto"
        ),
        ingest_group=env.get("LEDGER_INGEST_GROUP") or "ledger-ingest",
        ingest_batch_size=_positive_int(
            "LEDGER_INGEST_BATCH_SIZE", env.get("LEDGER_INGEST_BATCH_SIZE"), 500
        ),
        relay_batch_size=_positive_int(
            "LEDGER_RELAY_BATCH_SIZE", env.get("LEDGER_RELAY_BATCH_SIZE"), 500
        ),
        kafka_fetch_wait_ms=_positive_int(
            "LEDGER_KAFKA_FETCH_WAIT_MS", env.get("LEDGER_KAFKA_FETCH_WAIT_MS"), 100
        ),
        api_workers=_api_workers(env.get("LEDGER_API_WORKERS")),
        purpose_cache_subjects=_whole(
            "LEDGER_PURPOSE_CACHE_SUBJECTS",
            env.get("LEDGER_PURPOSE_CACHE_SUBJECTS"),
            50_000,
            minimum=0,
        ),
        api_host=env.get("LEDGER_API_HOST") or "127.0.0.1",
        api_port=_port("LEDGER_API_PORT", env.get("LEDGER_API_PORT"), 8600),
        retention_disclosures=_duration(
            "LEDGER_RETENTION_DISCLOSURES",
            env.get("LEDGER_RETENTION_DISCLOSURES"),
            timedelta(days=365),
        ),
        retention_collections=_duration(
            "LEDGER_RETENTION_COLLECTIONS",
            env.get("LEDGER_RETENTION_COLLECTIONS"),
            timedelta(days=365),
        ),
        ready_max_lag=_positive_int("LEDGER_READY_MAX_LAG", env.get("LEDGER_READY_MAX_LAG"), 1000),
        projection_batch_size=_positive_int(
            "LEDGER_PROJECTION_BATCH_SIZE", env.get("LEDGER_PROJECTION_BATCH_SIZE"), 500
        ),
        # How long a retired ingest key still opens messages: at least the ingest topic's
        # retention.ms (the ledger creates that topic with exactly this retention).
        ingest_retention=_duration(
            "LEDGER_INGEST_RETENTION", env.get("LEDGER_INGEST_RETENTION"), timedelta(days=7)
        ),
        ingest_max_message_bytes=_positive_int(
            "LEDGER_INGEST_MAX_MESSAGE_BYTES", env.get("LEDGER_INGEST_MAX_MESSAGE_BYTES"), 262_144
        ),
        ingest_session_max_messages=_positive_int(
            "LEDGER_INGEST_SESSION_MAX_MESSAGES",
            env.get("LEDGER_INGEST_SESSION_MAX_MESSAGES"),
            100_000,
        ),
        ingest_session_max_age=_duration(
            "LEDGER_INGEST_SESSION_MAX_AGE",
            env.get("LEDGER_INGEST_SESSION_MAX_AGE"),
            timedelta(hours=1),
        ),
        notifier_group=env.get("LEDGER_NOTIFIER_GROUP") or "ledger-notifier",
        webhook_max_attempts=_positive_int(
            "LEDGER_WEBHOOK_MAX_ATTEMPTS", env.get("LEDGER_WEBHOOK_MAX_ATTEMPTS"), 16
        ),
        webhook_retry_base=_duration(
            "LEDGER_WEBHOOK_RETRY_BASE", env.get("LEDGER_WEBHOOK_RETRY_BASE"), timedelta(seconds=2)
        ),
        webhook_retry_max=_duration(
            "LEDGER_WEBHOOK_RETRY_MAX", env.get("LEDGER_WEBHOOK_RETRY_MAX"), timedelta(hours=1)
        ),
        webhook_timeout=_duration(
            "LEDGER_WEBHOOK_TIMEOUT", env.get("LEDGER_WEBHOOK_TIMEOUT"), timedelta(seconds=10)
        ),
        checkpoint_key=_checkpoint_key(env),
        document_key=_document_key(env),
        kafka_security=_kafka_security(env),
        kafka_replication=TopicReplication(
            factor=_optional_positive_int(
                "LEDGER_KAFKA_REPLICATION_FACTOR", env.get("LEDGER_KAFKA_REPLICATION_FACTOR")
            ),
            min_insync=_optional_positive_int(
                "LEDGER_KAFKA_MIN_INSYNC_REPLICAS", env.get("LEDGER_KAFKA_MIN_INSYNC_REPLICAS")
            ),
        ),
        checkpoint_every=_positive_int(
            "LEDGER_CHECKPOINT_EVERY", env.get("LEDGER_CHECKPOINT_EVERY"), 10_000
        ),
        checkpoint_interval=_duration(
            "LEDGER_CHECKPOINT_INTERVAL",
            env.get("LEDGER_CHECKPOINT_INTERVAL"),
            timedelta(minutes=10),
        ),
        log_origin=_origin(env.get("LEDGER_LOG_ORIGIN")),
        witnesses=_witnesses(env.get("LEDGER_WITNESSES")),
        witness_quorum=_quorum(env),
        subject_cache_size=_positive_int(
            "LEDGER_SUBJECT_CACHE_SIZE", env.get("LEDGER_SUBJECT_CACHE_SIZE"), 50_000
        ),
        replay_ttl=_duration(
            "LEDGER_REPLAY_TTL", env.get("LEDGER_REPLAY_TTL"), timedelta(hours=24)
        ),
        web_session_idle=_duration(
            "LEDGER_WEB_SESSION_IDLE", env.get("LEDGER_WEB_SESSION_IDLE"), timedelta(minutes=15)
        ),
        web_session_max=_duration(
            "LEDGER_WEB_SESSION_MAX", env.get("LEDGER_WEB_SESSION_MAX"), timedelta(hours=8)
        ),
        privacy_link_ttl=_duration(
            "LEDGER_PRIVACY_LINK_TTL", env.get("LEDGER_PRIVACY_LINK_TTL"), timedelta(minutes=5)
        ),
        signin_limit=_rate_limit(env.get("LEDGER_SIGNIN_LIMIT")),
        privacy_frame_ancestors=_frame_ancestors(env.get("LEDGER_PRIVACY_FRAME_ANCESTORS")),
        shutdown_grace=_duration(
            "LEDGER_SHUTDOWN_GRACE", env.get("LEDGER_SHUTDOWN_GRACE"), timedelta(seconds=20)
        ),
        shutdown_drain=_duration(
            "LEDGER_SHUTDOWN_DRAIN", env.get("LEDGER_SHUTDOWN_DRAIN"), timedelta(0), zero=True
        ),
        write_timeout=_duration(
            "LEDGER_WRITE_TIMEOUT", env.get("LEDGER_WRITE_TIMEOUT"), timedelta(seconds=60)
        ),
        statement_timeout=_duration(
            "LEDGER_STATEMENT_TIMEOUT", env.get("LEDGER_STATEMENT_TIMEOUT"), timedelta(seconds=30)
        ),
        lock_timeout=_duration(
            "LEDGER_LOCK_TIMEOUT", env.get("LEDGER_LOCK_TIMEOUT"), timedelta(seconds=10)
        ),
        idle_transaction_timeout=_duration(
            "LEDGER_IDLE_TRANSACTION_TIMEOUT",
            env.get("LEDGER_IDLE_TRANSACTION_TIMEOUT"),
            timedelta(seconds=10),
        ),
    )


def _origin(raw: str | None) -> str:
    origin = (raw or "").strip() or "compliance-ledger"
    if any(c.isspace() or c == "+" for c in origin) or not origin.isprintable():
        raise ConfigError("LEDGER_LOG_ORIGIN must be a name without spaces or '+'")
    return origin


def _witnesses(raw: str | None) -> tuple[tuple[str, str], ...]:
    """``LEDGER_WITNESSES``: comma-separated ``VKEY URL`` pairs (a witness's verifier key, of
    type 0x04, and its tlog-witness submission prefix)."""
    out = []
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        fields = part.split()
        if len(fields) != 2 or fields[0].count("+") < 2:  # its base64 may hold "+" too
            raise ConfigError(
                "LEDGER_WITNESSES must be comma-separated pairs of a witness's verifier key "
                "(name+keyid+key) and its URL"
            )
        if not fields[1].startswith(("http://", "https://")):
            raise ConfigError("a witness URL in LEDGER_WITNESSES must be http:// or https://")
        out.append((fields[0], fields[1]))
    return tuple(out)


def _quorum(env: Mapping[str, str]) -> int:
    quorum = _whole("LEDGER_WITNESS_QUORUM", env.get("LEDGER_WITNESS_QUORUM"), 0, minimum=0)
    if quorum > len(_witnesses(env.get("LEDGER_WITNESSES"))):
        raise ConfigError("LEDGER_WITNESS_QUORUM is more than the witnesses in LEDGER_WITNESSES")
    return quorum


def _checkpoint_key(env: Mapping[str, str]) -> bytes | None:
    """``LEDGER_CHECKPOINT_KEY`` (base64), or the base64 text in ``LEDGER_CHECKPOINT_KEY_FILE``."""
    path = env.get("LEDGER_CHECKPOINT_KEY_FILE")
    if path and env.get("LEDGER_CHECKPOINT_KEY"):
        raise ConfigError(
            "set either LEDGER_CHECKPOINT_KEY or LEDGER_CHECKPOINT_KEY_FILE, not both"
        )
    if not path:
        return _b64_key("LEDGER_CHECKPOINT_KEY", env.get("LEDGER_CHECKPOINT_KEY"))
    try:
        text = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"LEDGER_CHECKPOINT_KEY_FILE {path} cannot be read") from None
    return _b64_key(f"LEDGER_CHECKPOINT_KEY_FILE {path}", text)


def _document_key(env: Mapping[str, str]) -> bytes | None:
    """``LEDGER_DOCUMENT_KEY`` (base64), or the base64 text in ``LEDGER_DOCUMENT_KEY_FILE``."""
    source = (
        "LEDGER_DOCUMENT_KEY_FILE" if env.get("LEDGER_DOCUMENT_KEY_FILE") else "LEDGER_DOCUMENT_KEY"
    )
    raw = _secret(env, "LEDGER_DOCUMENT_KEY")
    return _b64_key(source, raw.strip() if raw else None)


def _secret(env: Mapping[str, str], name: str) -> str | None:
    try:
        return secret(env, name)
    except SettingError as exc:
        raise ConfigError(str(exc)) from None


def _lookup_key(env: Mapping[str, str]) -> bytes | None:
    """``LEDGER_LOOKUP_KEY`` (base64), or the base64 text in ``LEDGER_LOOKUP_KEY_FILE``."""
    source = "LEDGER_LOOKUP_KEY_FILE" if env.get("LEDGER_LOOKUP_KEY_FILE") else "LEDGER_LOOKUP_KEY"
    raw = _secret(env, "LEDGER_LOOKUP_KEY")
    return _b64_key(source, raw.strip() if raw else None)


def _with_password_file(url: str | None, env: Mapping[str, str]) -> str | None:
    """``LEDGER_DATABASE_URL`` with the password from ``LEDGER_DATABASE_PASSWORD_FILE`` put in,
    so the URL itself (user, host, database) need not be a secret."""
    if not env.get("LEDGER_DATABASE_PASSWORD_FILE"):
        return url
    password = _secret(env, "LEDGER_DATABASE_PASSWORD")
    if not url:
        raise ConfigError("LEDGER_DATABASE_PASSWORD_FILE is set but LEDGER_DATABASE_URL is not")
    scheme, sep, rest = url.partition("://")
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    user, at, hosts = rest[:end].rpartition("@")
    if not sep or not at or not user:
        raise ConfigError(
            "LEDGER_DATABASE_URL needs a user name (postgresql://USER@host:5432/db) "
            "when LEDGER_DATABASE_PASSWORD_FILE is set"
        )
    if ":" in user:
        raise ConfigError(
            "LEDGER_DATABASE_URL holds a password and LEDGER_DATABASE_PASSWORD_FILE is set: "
            "keep the password in one of them"
        )
    return f"{scheme}://{user}:{quote(password or '', safe='')}@{hosts}{rest[end:]}"


def _kafka_security(env: Mapping[str, str]) -> KafkaSecurity:
    try:
        return kafka_security.from_environment(env)
    except SettingError as exc:
        raise ConfigError(str(exc)) from None
