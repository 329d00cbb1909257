"""What the provider modules share: the `Webhook` protocol, header lookup, signed-timestamp
windows, one-time-token replay guards, and reading the loose JSON of payloads."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TypedDict

from mailq.bounces.errors import InvalidPayload, MalformedWebhook, StaleTimestamp
from mailq.bounces.events import Event
from mailq.errors import ConfigError

SIGNATURE_TOLERANCE_S = 300.0  # signed timestamps within 5 minutes of now (Svix's default)
REPLAY_GUARD_SIZE = 100_000  # one-time tokens remembered per process
EMAIL_ID_TAG = "mailq_email_id"  # the tag/metadata/custom-arg name carrying our email id


class Origin(TypedDict):
    """The Event fields that name the email, shared by the events of one payload."""

    provider: str
    provider_message_id: str | None
    message_id: str | None
    email_id: int | None


class Webhook(Protocol):
    """One provider's webhook: verify a request, then read its events.

    `receive` raises `WebhookRejected` (→ 401) when verification fails, `WebhookUnavailable`
    (→ 503) when something it needs cannot be fetched, `InvalidPayload` (→ 400) when a verified
    body is unreadable. `now` is for tests; by default the current time.
    """

    provider: str

    async def receive(
        self, headers: Mapping[str, str], body: bytes, *, now: datetime | None = None
    ) -> tuple[Event, ...]: ...


class ReplayGuard(Protocol):
    """Remembers one-time tokens: `seen` is True when the token was seen before (and not yet
    expired), and records it otherwise. A shared implementation (a database table) makes the
    guard hold across processes; `MemoryReplayGuard` holds within one."""

    def seen(self, token: str, *, expires_at: float) -> bool: ...


class MemoryReplayGuard:
    """A bounded in-process `ReplayGuard` (tokens are forgotten once their window passed)."""

    def __init__(self, size: int = REPLAY_GUARD_SIZE) -> None:
        self._size = size
        self._tokens: OrderedDict[str, float] = OrderedDict()

    def seen(self, token: str, *, expires_at: float) -> bool:
        now = time.time()
        while self._tokens:
            oldest, expiry = next(iter(self._tokens.items()))
            if expiry > now and len(self._tokens) < self._size:
                break
            del self._tokens[oldest]
        if token in self._tokens:
            return True
        self._tokens[token] = expires_at
        return False


def lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers by lowercase name (Starlette's are case-insensitive already; dicts are not)."""
    return {name.lower(): value for name, value in headers.items()}


def required_header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if not value:
        raise MalformedWebhook(f"the request has no {name} header")
    return value.strip()


def now_seconds(now: datetime | None) -> float:
    return (now or datetime.now(UTC)).timestamp()


def check_window(signed_at: float, now: float, tolerance_s: float) -> None:
    """Refuse a signed timestamp more than `tolerance_s` away from now (either way)."""
    if abs(now - signed_at) > tolerance_s:
        raise StaleTimestamp(
            f"the signed timestamp is {int(now - signed_at)} s from now "
            f"(allowed: {int(tolerance_s)} s); check the clocks if this repeats"
        )


def parse_unix(value: object) -> float:
    """A signed Unix timestamp given as text; MalformedWebhook otherwise."""
    try:
        moment = float(str(value).strip())
    except ValueError:
        raise MalformedWebhook("the signed timestamp is not a number") from None
    if moment != moment or moment in (float("inf"), float("-inf")):
        raise MalformedWebhook("the signed timestamp is not a number")
    return moment


def load_json(body: bytes) -> Any:
    """The verified body as JSON; InvalidPayload when it is not."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidPayload("the body is not JSON") from None


def text(value: object) -> str | None:
    """A non-empty string field, else None."""
    return (value.strip() or None) if isinstance(value, str) else None


def mapping(value: object) -> Mapping[str, Any]:
    """A JSON object field, else an empty mapping."""
    return value if isinstance(value, Mapping) else {}


def items(value: object) -> list[Any]:
    """A JSON array field, else an empty list."""
    return value if isinstance(value, list) else []


def iso_time(value: object) -> datetime | None:
    """An ISO 8601 / RFC 3339 time (`2024-01-02T03:04:05.678Z`) as an aware datetime."""
    if not isinstance(value, str) or not value.strip():
        return None
    raw = value.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def unix_time(value: object) -> datetime | None:
    """A Unix timestamp (int, float or numeric text) as an aware datetime."""
    if isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def email_id_of(value: object) -> int | None:
    """Our email id from a tag value (`"42"`, `42`, or a one-element list of either)."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
        return number if 0 < number < 2**63 else None
    return None


def section_text(section: Mapping[str, object], provider: str, key: str) -> str:
    """A required text setting of `[webhooks.<provider>]`."""
    value = section.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"[webhooks.{provider}] {key}: required (a non-empty string)")
    return value.strip()


def section_seconds(
    section: Mapping[str, object], provider: str, key: str, default: float
) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"[webhooks.{provider}] {key}: must be a positive number of seconds")
    return float(value)
