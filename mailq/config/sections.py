"""Each section of MAILQ_CONFIG read into the value the code below config uses: kind
policies, the backend's rate limit, reply quirks, templates, the DKIM key, the tunables.

A bad value raises toml.Problem naming where it is; load_config adds the file and the line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mailq.addresses import AddressError, parse_mailbox
from mailq.compose.dkim import DkimKey
from mailq.compose.message import DEFAULT_FEEDBACK_SENDER_ID
from mailq.compose.templates import DEFAULT_FOLDER, TEMPLATE_NAME, TemplateStore
from mailq.config import toml
from mailq.config.toml import Problem, Where
from mailq.delivery.replies import BUILTIN_QUIRKS, CLASSES, Quirk
from mailq.kinds import (
    BUILTIN_KINDS,
    KIND_NAME,
    LOST_POLICIES,
    MAX_ATTEMPTS_LIMIT,
    KindPolicy,
    RateLimit,
)
from mailq.retry import RetryPolicy
from mailq.settings import BATCH_LIMIT, HTTP_BODY_LIMIT_BYTES, RETENTION_DAYS

TUNABLES = {
    # (section, key): (Settings field, env var that wins over the file, type)
    ("worker", "poll_interval"): ("poll_interval_s", "MAILQ_POLL_INTERVAL", float),
    ("worker", "lease"): ("lease_s", "MAILQ_LEASE", float),
    ("worker", "concurrency"): ("concurrency", "MAILQ_CONCURRENCY", int),
    ("worker", "shutdown_grace"): ("shutdown_grace_s", None, float),
    ("smtp", "connect_timeout"): ("smtp_connect_timeout_s", None, float),
    ("smtp", "reply_timeout"): ("smtp_reply_timeout_s", None, float),
}

KIND_KEYS = frozenset(
    {
        "priority",
        "concurrency",
        "max_attempts",
        "retry_for",
        "expire_after",
        "backoff",
        "rate",
        "burst",
        "template",
        "lost",
        "list_unsubscribe",
        "from",
        "bounces",  # [kinds.X.bounces], read by mailq.config.bounces
    }
)
_FEEDBACK_SENDER_ID = re.compile(r"^[A-Za-z0-9._-]{5,15}$")


def tunables(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """[worker] and [smtp]: Settings field name -> value (env vars win over them later)."""
    found: dict[str, Any] = {}
    for section in ("worker", "smtp"):
        table = toml.table(data.get(section, {}), (section,))
        toml.known(table, {k for s, k in TUNABLES if s == section}, (section,))
        for key, value in table.items():
            name, _env, kind = TUNABLES[(section, key)]
            found[name] = toml.number(table, key, (section,), 0, whole=kind is int)
            if found[name] <= 0 and key != "shutdown_grace":
                raise Problem((section, key), "must be a positive number")
            if kind is int:
                found[name] = int(value)
    return MappingProxyType(found)


def templates(data: Mapping[str, Any], base: Path) -> TemplateStore:
    """`templates`: a folder (relative to the file) searched before the default templates."""
    if "templates" not in data:
        return TemplateStore((DEFAULT_FOLDER,))
    folder = base / toml.string(data["templates"], ("templates",))
    if not folder.is_dir():
        raise Problem(("templates",), f"{folder} is not a folder")
    return TemplateStore((folder, DEFAULT_FOLDER))


def kinds(data: Mapping[str, Any]) -> Mapping[str, KindPolicy]:
    """[kinds.X]: the built-in kinds with the file's changes, and the kinds it declares."""
    found = dict(BUILTIN_KINDS)
    for name, table in toml.table(data.get("kinds", {}), ("kinds",)).items():
        if not KIND_NAME.match(name):
            raise Problem(("kinds", name), "not a kind name (lowercase, digits, _)")
        found[name] = _kind(name, toml.table(table, ("kinds", name)), found.get(name))
    return MappingProxyType(found)


def backend(data: Mapping[str, Any]) -> RateLimit | None:
    """[backend]: the rate limit of the whole backend, all workers together."""
    if "backend" not in data:
        return None
    return _rate_limit(toml.table(data["backend"], ("backend",)), ("backend",), welcome=True)


def limits(data: Mapping[str, Any]) -> tuple[int, int, float]:
    """[limits]: the HTTP body limit in bytes, emails per batch, retention in days."""
    where: Where = ("limits",)
    table = toml.table(data.get("limits", {}), where)
    toml.known(table, {"body_bytes", "batch", "retention_days"}, where)
    return (
        int(toml.number(table, "body_bytes", where, HTTP_BODY_LIMIT_BYTES)),
        int(toml.number(table, "batch", where, BATCH_LIMIT, whole=True)),
        toml.number(table, "retention_days", where, RETENTION_DAYS),
    )


def unsubscribe_mailto(data: Mapping[str, Any]) -> str | None:
    """[unsubscribe] mailto: the address of List-Unsubscribe's mailto: (None: the From)."""
    table = toml.table(data.get("unsubscribe", {}), ("unsubscribe",))
    toml.known(table, {"mailto"}, ("unsubscribe",))
    if table.get("mailto") is None:
        return None
    mailto = toml.string(table["mailto"], ("unsubscribe", "mailto"))
    if "@" not in mailto or re.search(r"[\s<>]", mailto):
        raise Problem(("unsubscribe", "mailto"), "must be an email address")
    return mailto


def quirks(data: Mapping[str, Any]) -> tuple[Quirk, ...]:
    """[[quirks]], first match wins, then the built-in quirks."""
    raw = data.get("quirks", [])
    if not isinstance(raw, list):
        raise Problem(("quirks",), "must be an array of tables ([[quirks]])")
    return tuple(_quirk(q, ("quirks", i)) for i, q in enumerate(raw)) + BUILTIN_QUIRKS


def feedback_sender_id(data: Mapping[str, Any]) -> str:
    """[campaigns] feedback_sender_id: the last field of campaign emails' Feedback-ID."""
    where: Where = ("campaigns", "feedback_sender_id")
    table = toml.table(data.get("campaigns", {}), ("campaigns",))
    toml.known(table, {"feedback_sender_id"}, ("campaigns",))
    if "feedback_sender_id" not in table:
        return DEFAULT_FEEDBACK_SENDER_ID
    sender_id = toml.string(table["feedback_sender_id"], where)
    if not _FEEDBACK_SENDER_ID.match(sender_id):
        raise Problem(where, "5 to 15 characters of letters, digits, '.', '_' or '-'")
    return sender_id


def dkim(data: Mapping[str, Any], base: Path) -> DkimKey | None:
    """[dkim]: the signing key (its PEM file relative to the config file)."""
    return _dkim(data["dkim"], base) if "dkim" in data else None


def _kind(name: str, table: Mapping[str, Any], base: KindPolicy | None) -> KindPolicy:
    where = ("kinds", name)
    toml.known(table, KIND_KEYS, where)
    # A kind the file declares is transactional until it says otherwise: one click on an
    # invoice's List-Unsubscribe would suppress the customer for every kind.
    policy = base or KindPolicy(name, priority=5, list_unsubscribe=False)
    changes: dict[str, Any] = {}
    if "priority" in table:
        priority = int(toml.number(table, "priority", where, 0, whole=True))
        if not 0 <= priority <= 9:
            raise Problem((*where, "priority"), "must be a whole number from 0 to 9")
        changes["priority"] = priority
    if "concurrency" in table:
        changes["concurrency"] = int(toml.number(table, "concurrency", where, 1, whole=True))
        if changes["concurrency"] < 1:
            raise Problem((*where, "concurrency"), "must be at least 1")
    if "max_attempts" in table:
        changes["max_attempts"] = int(toml.number(table, "max_attempts", where, 1, whole=True))
        if not 1 <= changes["max_attempts"] <= MAX_ATTEMPTS_LIMIT:
            raise Problem(
                (*where, "max_attempts"), f"must be a whole number from 1 to {MAX_ATTEMPTS_LIMIT}"
            )
    for key, name in (("retry_for", "retry_for_s"), ("expire_after", "expire_after_s")):
        if key in table:
            changes[name] = toml.number(table, key, where, 0)
            if changes[name] <= 0:
                raise Problem((*where, key), "must be a positive number of seconds")
    if "backoff" in table:
        changes["retry"] = _backoff(toml.table(table["backoff"], (*where, "backoff")), where)
    if "rate" in table or "burst" in table:
        changes["rate_limit"] = _rate_limit(table, where, welcome=False)
    if "template" in table:
        template = toml.string(table["template"], (*where, "template"))
        if not TEMPLATE_NAME.match(template):
            raise Problem((*where, "template"), "not a template name (a-z, 0-9, _, -)")
        changes["template"] = template
    if "lost" in table:
        lost = toml.string(table["lost"], (*where, "lost"))
        if lost not in LOST_POLICIES:
            raise Problem((*where, "lost"), f"must be one of {', '.join(LOST_POLICIES)}")
        changes["lost"] = lost
    if "list_unsubscribe" in table:
        if not isinstance(table["list_unsubscribe"], bool):
            raise Problem((*where, "list_unsubscribe"), "must be true or false")
        changes["list_unsubscribe"] = table["list_unsubscribe"]
    if "from" in table:
        sender = toml.string(table["from"], (*where, "from"))
        try:
            changes["from_address"] = str(parse_mailbox(sender))
        except AddressError as exc:
            raise Problem((*where, "from"), f"{sender!r} is not a valid mailbox ({exc})") from None
    return replace(policy, **changes)


def _backoff(table: Mapping[str, Any], where: Where) -> RetryPolicy:
    inner = (*where, "backoff")
    toml.known(table, {"base", "cap", "jitter"}, inner)
    default = RetryPolicy()
    base = toml.number(table, "base", inner, default.base_s)
    cap = toml.number(table, "cap", inner, max(default.cap_s, base))
    jitter = toml.number(table, "jitter", inner, default.jitter)
    if base <= 0 or cap < base:
        raise Problem((*inner, "cap"), "base must be positive and cap at least base")
    if not 0 <= jitter < 1:
        raise Problem((*inner, "jitter"), "must be from 0 to below 1")
    return RetryPolicy(base_s=base, cap_s=cap, jitter=jitter)


def _rate_limit(table: Mapping[str, Any], where: Where, *, welcome: bool) -> RateLimit:
    if welcome:
        toml.known(table, {"rate", "burst", "welcome_reserve"}, where)
    if "rate" not in table:
        raise Problem((*where, "rate"), "required (emails per second) when burst is given")
    rate = toml.number(table, "rate", where, 0)
    if rate <= 0:
        raise Problem((*where, "rate"), "must be a positive number of emails per second")
    burst = toml.number(table, "burst", where, max(1.0, rate))
    if burst < 1:
        raise Problem((*where, "burst"), "must be at least 1")
    reserve = 0.0
    if welcome:
        reserve = toml.number(table, "welcome_reserve", where, float(int(burst // 4)))
        if reserve < 0 or reserve > burst - 1:
            raise Problem((*where, "welcome_reserve"), "must be from 0 to burst - 1")
    return RateLimit(rate=rate, burst=burst, reserve=reserve)


def _quirk(raw: object, where: Where) -> Quirk:
    table = toml.table(raw, where)
    toml.known(table, {"code", "enhanced", "match", "outcome", "suppress"}, where)
    outcome = toml.string(table.get("outcome"), (*where, "outcome"))
    if outcome not in CLASSES:
        raise Problem((*where, "outcome"), f"must be one of {', '.join(CLASSES)}")
    code = None
    if "code" in table:
        code = int(toml.number(table, "code", where, 0, whole=True))
        if not 200 <= code <= 599:
            raise Problem((*where, "code"), "must be an SMTP reply code (200-599)")
    enhanced = None
    if "enhanced" in table:
        enhanced = toml.string(table["enhanced"], (*where, "enhanced"))
        if not re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", enhanced):
            raise Problem((*where, "enhanced"), "must look like 5.1.1")
    match = None
    if "match" in table:
        match = toml.string(table["match"], (*where, "match"))
        try:
            re.compile(match)
        except re.error as exc:
            raise Problem((*where, "match"), f"not a regular expression: {exc}") from None
    if code is None and enhanced is None and match is None:
        raise Problem(where, "give at least one of code, enhanced, match")
    suppress = table.get("suppress", False)
    if not isinstance(suppress, bool):
        raise Problem((*where, "suppress"), "must be true or false")
    return Quirk(outcome, code=code, enhanced=enhanced, match=match, suppress=suppress)


def _dkim(raw: object, base: Path) -> DkimKey:
    where: Where = ("dkim",)
    table = toml.table(raw, where)
    toml.known(table, {"domain", "selector", "private_key", "headers"}, where)
    domain = toml.string(table.get("domain"), (*where, "domain"))
    selector = toml.string(table.get("selector"), (*where, "selector"))
    key_path = base / toml.string(table.get("private_key"), (*where, "private_key"))
    try:
        key = key_path.read_bytes()
    except OSError as exc:
        raise Problem((*where, "private_key"), f"cannot read {key_path}: {exc.strerror}") from None
    if b"PRIVATE KEY" not in key:
        raise Problem((*where, "private_key"), f"{key_path} is not a PEM private key")
    headers = table.get("headers")
    if headers is not None and (
        not isinstance(headers, list) or not all(isinstance(h, str) for h in headers)
    ):
        raise Problem((*where, "headers"), "must be a list of header names")
    try:
        import dkim  # noqa: F401 - only checks that the optional dependency is there
    except ImportError:
        raise Problem(where, "DKIM signing needs dkimpy: pip install 'mailq[dkim]'") from None
    return DkimKey(domain, selector, key, tuple(headers) if headers else None)
