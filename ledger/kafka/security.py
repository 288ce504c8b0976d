"""How the ledger's Kafka clients authenticate and encrypt: TLS and SASL settings.

Read from ``LEDGER_KAFKA_*`` variables (tables in ``docs/operations.md`` and ``docs/deploy.md``) and
turned into kafka-python keyword arguments by :meth:`KafkaSecurity.client_config`, which
``ledger.kafka.connection`` gives to every producer, consumer and admin client. Rules:

- **Nothing half-configured.** A SASL protocol needs a mechanism, a user name and a
  password; SASL or TLS settings given with a protocol that would not use them are an error
  (an operator who set a password expects it to be used, not a silent plaintext connection).
- **Files are checked when the settings are read**, so a missing CA or key file stops the
  process at start with the variable's name, not at the first connection.
- **Secrets never appear in errors or ``repr``.** Passwords come from the variable or from
  its ``_FILE`` (:mod:`ledger.plumbing.secret_files`); messages name variables and paths only.
- **Server certificates are verified**, host name included (``LEDGER_KAFKA_SSL_CHECK_HOSTNAME``
  turns only the name check off); without ``LEDGER_KAFKA_SSL_CAFILE`` the system's CAs are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.plumbing.secret_files import SettingError, readable_file, secret

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")
_SASL_NAMES = ("LEDGER_KAFKA_SASL_MECHANISM", "LEDGER_KAFKA_SASL_USERNAME")
_SSL_NAMES = ("LEDGER_KAFKA_SSL_CAFILE", "LEDGER_KAFKA_SSL_CERTFILE", "LEDGER_KAFKA_SSL_KEYFILE")


@dataclass(frozen=True)
class KafkaSecurity:
    """The security settings of every Kafka client the ledger makes (default: PLAINTEXT)."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def client_config(self) -> dict[str, Any]:
        """kafka-python keyword arguments (identical for producers, consumers and admins)."""
        return self._config(_KAFKA_PYTHON, self.protocol, self.ssl_check_hostname)

    def librdkafka_config(self) -> dict[str, Any]:
        """The same settings under librdkafka's names (``ledger.kafka.librdkafka``)."""
        check = "https" if self.ssl_check_hostname else "none"
        return self._config(_LIBRDKAFKA, self.protocol.lower(), check)

    def _config(self, names: Mapping[str, str], protocol: str, check: object) -> dict[str, Any]:
        config: dict[str, Any] = {names["protocol"]: protocol}
        if self.uses_tls:
            config[names["check"]] = check
            optional = {
                names["cafile"]: self.ssl_cafile,
                names["certfile"]: self.ssl_certfile,
                names["keyfile"]: self.ssl_keyfile,
                names["key_password"]: self.ssl_key_password,
            }
            config.update({k: v for k, v in optional.items() if v is not None})
        if self.uses_sasl:
            config[names["mechanism"]] = self.sasl_mechanism
            config[names["username"]] = self.sasl_username
            config[names["password"]] = self.sasl_password
        return config


# The security settings' names in each client library.
_KAFKA_PYTHON = {
    "protocol": "security_protocol",
    "check": "ssl_check_hostname",
    "cafile": "ssl_cafile",
    "certfile": "ssl_certfile",
    "keyfile": "ssl_keyfile",
    "key_password": "ssl_password",
    "mechanism": "sasl_mechanism",
    "username": "sasl_plain_username",
    "password": "sasl_plain_password",
}
_LIBRDKAFKA = {
    "protocol": "security.protocol",
    "check": "ssl.endpoint.identification.algorithm",
    "cafile": "ssl.ca.location",
    "certfile": "ssl.certificate.location",
    "keyfile": "ssl.key.location",
    "key_password": "ssl.key.password",
    "mechanism": "sasl.mechanism",
    "username": "sasl.username",
    "password": "sasl.password",
}


def from_environment(env: Mapping[str, str]) -> KafkaSecurity:
    """Reads and checks the ``LEDGER_KAFKA_*`` security variables; raises SettingError."""
    protocol = _upper_choice(env, "LEDGER_KAFKA_SECURITY_PROTOCOL", PROTOCOLS) or "PLAINTEXT"
    security = KafkaSecurity(
        protocol=protocol,
        sasl_mechanism=_upper_choice(env, "LEDGER_KAFKA_SASL_MECHANISM", MECHANISMS),
        sasl_username=env.get("LEDGER_KAFKA_SASL_USERNAME") or None,
        sasl_password=secret(env, "LEDGER_KAFKA_SASL_PASSWORD"),
        ssl_cafile=readable_file(env, "LEDGER_KAFKA_SSL_CAFILE"),
        ssl_certfile=readable_file(env, "LEDGER_KAFKA_SSL_CERTFILE"),
        ssl_keyfile=readable_file(env, "LEDGER_KAFKA_SSL_KEYFILE"),
        ssl_key_password=secret(env, "LEDGER_KAFKA_SSL_KEY_PASSWORD"),
        ssl_check_hostname=_flag(env, "LEDGER_KAFKA_SSL_CHECK_HOSTNAME", default=True),
    )
    _check_sasl(security, env)
    _check_tls(security, env)
    return security


def _check_sasl(s: KafkaSecurity, env: Mapping[str, str]) -> None:
    if not s.uses_sasl:
        given = [n for n in _SASL_NAMES if env.get(n)]
        if s.sasl_password is not None:
            given.append("LEDGER_KAFKA_SASL_PASSWORD")
        if given:
            raise SettingError(
                f"{', '.join(given)} set but LEDGER_KAFKA_SECURITY_PROTOCOL is {s.protocol}: "
                "use SASL_SSL (or SASL_PLAINTEXT on a private network) to authenticate"
            )
        return
    missing = [
        name
        for name, value in (
            ("LEDGER_KAFKA_SASL_MECHANISM", s.sasl_mechanism),
            ("LEDGER_KAFKA_SASL_USERNAME", s.sasl_username),
            ("LEDGER_KAFKA_SASL_PASSWORD (or _FILE)", s.sasl_password),
        )
        if value is None
    ]
    if missing:
        raise SettingError(
            f"LEDGER_KAFKA_SECURITY_PROTOCOL={s.protocol} needs {', '.join(missing)}"
        )


def _check_tls(s: KafkaSecurity, env: Mapping[str, str]) -> None:
    if not s.uses_tls:
        given = [n for n in (*_SSL_NAMES, "LEDGER_KAFKA_SSL_CHECK_HOSTNAME") if env.get(n)]
        if s.ssl_key_password is not None:
            given.append("LEDGER_KAFKA_SSL_KEY_PASSWORD")
        if given:
            raise SettingError(
                f"{', '.join(given)} set but LEDGER_KAFKA_SECURITY_PROTOCOL is {s.protocol}: "
                "use SSL or SASL_SSL for TLS"
            )
        return
    if s.ssl_keyfile and not s.ssl_certfile:
        raise SettingError("LEDGER_KAFKA_SSL_KEYFILE needs LEDGER_KAFKA_SSL_CERTFILE")
    if s.ssl_key_password is not None and not s.ssl_certfile:
        raise SettingError("LEDGER_KAFKA_SSL_KEY_PASSWORD needs LEDGER_KAFKA_SSL_CERTFILE")


def _upper_choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    raw = env.get(name)
    if not raw:
        return None
    value = raw.strip().upper()
    if value not in choices:
        raise SettingError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name)
    if not raw:
        return default
    value = raw.strip().lower()
    if value not in (*_TRUE, *_FALSE):
        raise SettingError(f"{name} must be true or false, got {raw!r}")
    return value in _TRUE
