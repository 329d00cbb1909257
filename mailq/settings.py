"""Settings, read once from MAILQ_* environment variables at the edge of a process.

The library itself never reads the environment: `Settings` is passed down explicitly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from mailq.addresses import AddressError, parse_mailbox
from mailq.errors import ConfigError

POLL_INTERVAL_S = 5.0
LEASE_S = 30.0
CONCURRENCY = 16
SHUTDOWN_GRACE_S = 30.0
SMTP_CONNECT_TIMEOUT_S = 10.0
SMTP_REPLY_TIMEOUT_S = 120.0
HTTP_BODY_LIMIT_BYTES = 10 * 1024 * 1024
BATCH_LIMIT = 10_000
RETENTION_DAYS = 14.0
IDEMPOTENCY_KEY_HOURS = 24.0
DEFAULT_FROM = "mailq@localhost"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


def default_home(environ: Mapping[str, str]) -> Path:
    data = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "mailq"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a mailq process is configured with."""

    database_url: str | None = None
    home: Path = field(default_factory=lambda: default_home({}))
    backend: str | None = None
    from_address: str = DEFAULT_FROM
    poll_interval_s: float = POLL_INTERVAL_S
    lease_s: float = LEASE_S
    concurrency: int = CONCURRENCY
    shutdown_grace_s: float = SHUTDOWN_GRACE_S
    smtp_connect_timeout_s: float = SMTP_CONNECT_TIMEOUT_S
    smtp_reply_timeout_s: float = SMTP_REPLY_TIMEOUT_S
    api_tokens: tuple[str, ...] = ()
    admin_tokens: tuple[str, ...] = ()
    # Read-only: the dashboard and every GET /v1/..., no change.
    viewer_tokens: tuple[str, ...] = ()
    secret_key: str | None = None
    public_url: str = DEFAULT_PUBLIC_URL
    embedded_worker: bool = True
    redirect_all_to: str | None = None
    config_file: Path | None = None
    retention_days: float = RETENTION_DAYS
    # The name given in EHLO (MAILQ_HELO_NAME); None: the host's FQDN.
    helo_name: str | None = None
    # MAILQ_BOUNCE_DOMAIN: SMTP mail goes out with a VERP envelope sender of this domain.
    bounce_domain: str | None = None

    @property
    def backend_url(self) -> str:
        """MAILQ_BACKEND, defaulting to the file outbox under MAILQ_HOME."""
        return self.backend or f"file://{self.home / 'outbox'}"

    @property
    def heartbeat_interval_s(self) -> float:
        return self.lease_s / 5

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields changed (CLI flags), validated again."""
        updated = replace(self, **changes)  # type: ignore[arg-type]
        updated.validate()
        return updated

    def validate(self) -> None:
        if self.poll_interval_s <= 0:
            raise ConfigError("MAILQ_POLL_INTERVAL must be a positive number of seconds")
        if self.lease_s < 1:
            raise ConfigError("MAILQ_LEASE must be at least 1 second")
        if not 1 <= self.concurrency <= 10_000:
            raise ConfigError("MAILQ_CONCURRENCY must be a whole number from 1 to 10000")
        if self.retention_days <= 0:
            raise ConfigError("MAILQ_RETENTION_DAYS must be a positive number of days")
        if self.shutdown_grace_s < 0:
            raise ConfigError("the shutdown grace period cannot be negative")
        if self.database_url is not None and not self.database_url.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ConfigError("MAILQ_DATABASE_URL must start with postgresql://")
        _check_mailbox("MAILQ_FROM", self.from_address)
        if self.redirect_all_to is not None:
            _check_mailbox("MAILQ_REDIRECT_ALL_TO", self.redirect_all_to)
        if self.bounce_domain is not None and not _BOUNCE_DOMAIN.match(self.bounce_domain):
            raise ConfigError(
                f"MAILQ_BOUNCE_DOMAIN: {self.bounce_domain!r} is not a domain name "
                "(e.g. bounces.example.com)"
            )
        if self.helo_name is not None and not _HELO_NAME.match(self.helo_name):
            raise ConfigError(
                f"MAILQ_HELO_NAME: {self.helo_name!r} is not a host name (letters, digits, "
                "'-' and '.', e.g. mail.example.com) or an address literal like [192.0.2.1]"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("MAILQ_HOME") or default_home(env)).expanduser().resolve()
        config_file = env.get("MAILQ_CONFIG")
        settings = cls(
            database_url=env.get("MAILQ_DATABASE_URL") or None,
            home=home,
            backend=env.get("MAILQ_BACKEND") or None,
            from_address=env.get("MAILQ_FROM") or DEFAULT_FROM,
            poll_interval_s=_number(env, "MAILQ_POLL_INTERVAL", POLL_INTERVAL_S),
            lease_s=_number(env, "MAILQ_LEASE", LEASE_S),
            concurrency=int(_number(env, "MAILQ_CONCURRENCY", CONCURRENCY, whole=True)),
            api_tokens=_tokens(env.get("MAILQ_API_TOKEN")),
            admin_tokens=_tokens(env.get("MAILQ_ADMIN_TOKEN")),
            viewer_tokens=_tokens(env.get("MAILQ_VIEWER_TOKEN")),
            secret_key=env.get("MAILQ_SECRET_KEY") or None,
            public_url=(env.get("MAILQ_PUBLIC_URL") or DEFAULT_PUBLIC_URL).rstrip("/"),
            embedded_worker=_flag(env, "MAILQ_EMBEDDED_WORKER", default=True),
            redirect_all_to=env.get("MAILQ_REDIRECT_ALL_TO") or None,
            config_file=Path(config_file).expanduser() if config_file else None,
            retention_days=_number(env, "MAILQ_RETENTION_DAYS", RETENTION_DAYS),
            helo_name=(env.get("MAILQ_HELO_NAME") or "").strip() or None,
            bounce_domain=(env.get("MAILQ_BOUNCE_DOMAIN") or "").strip().lower() or None,
        )
        settings.validate()
        return settings


# RFC 5321 §4.1.1.1: EHLO takes a domain or an address literal.
_HELO_NAME = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])$"
)


_BOUNCE_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)


def _check_mailbox(name: str, value: str) -> None:
    """A setting that must be a mailbox: a bad one stops the process at start, in one line."""
    try:
        parse_mailbox(value)
    except AddressError as exc:
        raise ConfigError(f"{name}: {value!r} is not a valid mailbox ({exc})") from None


def _number(env: Mapping[str, str], name: str, default: float, whole: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")


def _tokens(raw: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (raw or "").split(",") if t.strip())
