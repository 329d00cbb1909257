"""The MAILQ_CONFIG file (TOML): kinds, rate limits, provider quirks, templates, DKIM, tunables.

Read once at the edge of a process (`load_settings`); a bad file fails at start with the
file, the line and the reason. Every section is optional::

    templates = "templates"            # folder of named templates, relative to this file

    [worker]                           # below the MAILQ_POLL_INTERVAL/LEASE/CONCURRENCY env
    poll_interval = 5.0                # seconds
    lease = 30.0                       # seconds
    concurrency = 16                   # sends in flight per worker
    shutdown_grace = 30.0              # seconds

    [smtp]
    connect_timeout = 10.0
    reply_timeout = 120.0

    [limits]
    body_bytes = 10485760              # HTTP body limit
    batch = 10000                      # emails per batch request
    retention_days = 14.0

    [backend]                          # the whole backend, all workers together
    rate = 14                          # emails per second
    burst = 14                         # at most this many at once (default: rate)
    welcome_reserve = 3                # tokens only `welcome` may take (default: burst / 4)

    [kinds.search_engine]              # a built-in kind: given fields override its defaults
    priority = 5                       # 0-9, lower is sooner
    concurrency = 8                    # per worker
    max_attempts = 8                   # an extra cap (default: none, retry_for decides)
    retry_for = 432000                 # seconds from first due: retry transient failures
    expire_after = 600                 # seconds from first due: not sent after (default: never)
    backoff = { base = 30, cap = 3600, jitter = 0.25 }    # seconds
    rate = 10                          # per second, all workers together
    burst = 10
    template = "search_engine"         # used when an email gives no content or template
    lost = "retry"                     # or "hold": state `unknown` if DATA had begun
    list_unsubscribe = true            # List-Unsubscribe + one-click headers (a declared
                                       # kind: false unless it says so)
    from = "Acme News <news@acme.example.com>"   # the kind's From (default MAILQ_FROM)

    [campaigns]
    feedback_sender_id = "acme"        # last field of Feedback-ID (5-15 characters)

    [unsubscribe]
    mailto = "unsubscribe@example.com" # the mailto: of List-Unsubscribe (default: From)

    [bounces]                          # mailq.bounces.policy (also [kinds.X.bounces])
    feedback_address = "fbl@bounces.example.com"   # where ARF reports come (mailq bounces serve)
    soft_threshold = 3                 # hard, complaint, soft_*, pause_*: see the policy

    [webhooks.postmark]                # one table per provider: ses, postmark, mailgun, ...
    username = "mailq"

    [dkim]
    domain = "example.com"
    selector = "mail"
    private_key = "dkim.pem"           # PEM file, relative to this file

    [[quirks]]                         # first match wins, before the built-in quirks
    code = 454                         # any of code / enhanced / match; all given must hold
    enhanced = "4.7.0"
    match = "throttl"                  # regular expression, case-insensitive
    outcome = "transient"              # or "permanent"
    suppress = false                   # also suppress the recipient
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mailq.addresses import AddressError, parse_mailbox
from mailq.bounces.policy import (
    DEFAULT_POLICY,
    POLICY_KEYS,
    BouncePolicy,
    PolicyProblem,
    policy_from_table,
)
from mailq.compose.dkim import DkimKey
from mailq.compose.templates import DEFAULT_FOLDER, TEMPLATE_NAME, TemplateStore
from mailq.delivery.replies import BUILTIN_QUIRKS, CLASSES, Quirk
from mailq.errors import ConfigError
from mailq.kinds import (
    BUILTIN_KINDS,
    KIND_NAME,
    LOST_POLICIES,
    MAX_ATTEMPTS_LIMIT,
    KindPolicy,
    RateLimit,
)
from mailq.retry import RetryPolicy
from mailq.settings import BATCH_LIMIT, HTTP_BODY_LIMIT_BYTES, RETENTION_DAYS, Settings

DEFAULT_FEEDBACK_SENDER_ID = "mailq"
_FEEDBACK_SENDER_ID = re.compile(r"^[A-Za-z0-9._-]{5,15}$")


@dataclass(frozen=True, slots=True)
class Config:
    """What MAILQ_CONFIG declares (built-in defaults without a file)."""

    kinds: Mapping[str, KindPolicy] = field(default_factory=lambda: BUILTIN_KINDS)
    quirks: tuple[Quirk, ...] = BUILTIN_QUIRKS
    templates: TemplateStore = field(default_factory=TemplateStore)
    backend_rate_limit: RateLimit | None = None
    dkim: DkimKey | None = None
    unsubscribe_mailto: str | None = None
    body_limit_bytes: int = HTTP_BODY_LIMIT_BYTES
    batch_limit: int = BATCH_LIMIT
    retention_days: float = RETENTION_DAYS
    # The last field of campaign emails' Feedback-ID ([campaigns] feedback_sender_id).
    feedback_sender_id: str = DEFAULT_FEEDBACK_SENDER_ID
    # [bounces]: what bounces and complaints do, the feedback-loop address, per-kind policies.
    bounces: BouncePolicy = DEFAULT_POLICY
    kind_bounces: Mapping[str, BouncePolicy] = field(default_factory=dict)
    feedback_address: str | None = None
    # [webhooks.<provider>] tables, checked when the service builds the webhooks.
    webhooks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Settings the file gives (field name of Settings -> value); env vars win over them.
    tunables: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None


DEFAULT_CONFIG = Config()

_TUNABLES = {
    # (section, key): (Settings field, env var that wins over the file, type)
    ("worker", "poll_interval"): ("poll_interval_s", "MAILQ_POLL_INTERVAL", float),
    ("worker", "lease"): ("lease_s", "MAILQ_LEASE", float),
    ("worker", "concurrency"): ("concurrency", "MAILQ_CONCURRENCY", int),
    ("worker", "shutdown_grace"): ("shutdown_grace_s", None, float),
    ("smtp", "connect_timeout"): ("smtp_connect_timeout_s", None, float),
    ("smtp", "reply_timeout"): ("smtp_reply_timeout_s", None, float),
}
_KIND_KEYS = frozenset(
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
        "bounces",
    }
)
_TOP_KEYS = frozenset(
    {
        "templates",
        "worker",
        "smtp",
        "limits",
        "backend",
        "kinds",
        "unsubscribe",
        "dkim",
        "quirks",
        "campaigns",
        "bounces",
        "webhooks",
    }
)


class _Problem(Exception):
    def __init__(self, where: tuple[str | int, ...], reason: str) -> None:
        super().__init__(reason)
        self.where = where
        self.reason = reason


@functools.cache
def from_environment() -> tuple[Settings, Config]:
    """The process's settings and MAILQ_CONFIG, read from the environment once, on first use.

    What mailq.enqueue, mailq.enqueue_sync and mailq.campaigns.create_campaign apply when the
    caller passes no settings of its own (SPEC "Configuration everywhere"): the same MAILQ_FROM
    and kinds the CLI and the service use. Nothing is read at import time."""
    return load_settings(os.environ)


def load_settings(environ: Mapping[str, str] | None = None) -> tuple[Settings, Config]:
    """Settings from MAILQ_* env vars and the MAILQ_CONFIG file they name (env wins). The
    process edges (the CLI, the service) call it once; the library uses from_environment."""
    env = os.environ if environ is None else environ
    settings = Settings.from_env(env)
    if settings.config_file is None:
        return settings, DEFAULT_CONFIG
    config = load_config(settings.config_file)
    return apply_tunables(settings, config, env), config


def apply_tunables(settings: Settings, config: Config, environ: Mapping[str, str]) -> Settings:
    """The file's tunables, except where an env var set the same thing."""
    changes = {}
    tunables = dict(config.tunables)
    # [limits] retention_days is the file's form of MAILQ_RETENTION_DAYS (the env var wins).
    retention_set = config.retention_days != RETENTION_DAYS
    if retention_set and not environ.get("MAILQ_RETENTION_DAYS", "").strip():
        tunables["retention_days"] = config.retention_days
    for name, value in tunables.items():
        env_name = next((e for f, e, _t in _TUNABLES.values() if f == name), None)
        if env_name and environ.get(env_name, "").strip():
            continue
        changes[name] = value
    if not changes:
        return settings
    try:
        return settings.with_overrides(**changes)
    except ConfigError as exc:
        raise ConfigError(f"{config.path}: {exc}") from None


def load_config(path: Path) -> Config:
    """Read and check a config file; ConfigError names the file, the line and the reason."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"MAILQ_CONFIG: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return _build(data, path)
    except _Problem as problem:
        line = _line_of(text, problem.where)
        at = f"{path}:{line}" if line else str(path)
        dotted = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in problem.where)
        dotted = dotted.replace(".[", "[")
        raise ConfigError(f"{at}: {dotted}: {problem.reason}") from None


def _build(data: Mapping[str, Any], path: Path) -> Config:
    base = path.resolve().parent
    for key in data:
        if key not in _TOP_KEYS:
            raise _Problem((key,), "unknown setting")
    tunables = _tunables(data)
    templates = TemplateStore((DEFAULT_FOLDER,))
    if "templates" in data:
        folder = base / _string(data["templates"], ("templates",))
        if not folder.is_dir():
            raise _Problem(("templates",), f"{folder} is not a folder")
        templates = TemplateStore((folder, DEFAULT_FOLDER))
    bounces_table = _table(data.get("bounces", {}), ("bounces",))
    bounces = _bounce_policy(bounces_table, ("bounces",), DEFAULT_POLICY)
    kinds, kind_bounces = _kinds(data, bounces)
    backend = None
    if "backend" in data:
        backend = _rate_limit(_table(data["backend"], ("backend",)), ("backend",), welcome=True)
    limits = _table(data.get("limits", {}), ("limits",))
    _known(limits, {"body_bytes", "batch", "retention_days"}, ("limits",))
    unsubscribe = _table(data.get("unsubscribe", {}), ("unsubscribe",))
    _known(unsubscribe, {"mailto"}, ("unsubscribe",))
    mailto = unsubscribe.get("mailto")
    if mailto is not None:
        mailto = _string(mailto, ("unsubscribe", "mailto"))
        if "@" not in mailto or re.search(r"[\s<>]", mailto):
            raise _Problem(("unsubscribe", "mailto"), "must be an email address")
    quirks_raw = data.get("quirks", [])
    if not isinstance(quirks_raw, list):
        raise _Problem(("quirks",), "must be an array of tables ([[quirks]])")
    quirks = tuple(_quirk(q, ("quirks", i)) for i, q in enumerate(quirks_raw))
    campaigns = _table(data.get("campaigns", {}), ("campaigns",))
    _known(campaigns, {"feedback_sender_id"}, ("campaigns",))
    sender_id = DEFAULT_FEEDBACK_SENDER_ID
    if "feedback_sender_id" in campaigns:
        sender_id = _string(campaigns["feedback_sender_id"], ("campaigns", "feedback_sender_id"))
        if not _FEEDBACK_SENDER_ID.match(sender_id):
            raise _Problem(
                ("campaigns", "feedback_sender_id"),
                "5 to 15 characters of letters, digits, '.', '_' or '-'",
            )
    return Config(
        kinds=MappingProxyType(kinds),
        quirks=quirks + BUILTIN_QUIRKS,
        templates=templates,
        backend_rate_limit=backend,
        dkim=_dkim(data["dkim"], base) if "dkim" in data else None,
        unsubscribe_mailto=mailto,
        body_limit_bytes=int(_number(limits, "body_bytes", ("limits",), HTTP_BODY_LIMIT_BYTES)),
        batch_limit=int(_number(limits, "batch", ("limits",), BATCH_LIMIT, whole=True)),
        retention_days=_number(limits, "retention_days", ("limits",), RETENTION_DAYS),
        feedback_sender_id=sender_id,
        bounces=bounces,
        kind_bounces=MappingProxyType(kind_bounces),
        feedback_address=_feedback_address(bounces_table),
        webhooks=_webhooks(data.get("webhooks", {})),
        tunables=MappingProxyType(tunables),
        path=path,
    )


def _kinds(
    data: Mapping[str, Any], bounces: BouncePolicy
) -> tuple[dict[str, KindPolicy], dict[str, BouncePolicy]]:
    """The kinds (built in, then the file's) and the kinds' own `[kinds.X.bounces]`."""
    kinds = dict(BUILTIN_KINDS)
    kind_bounces: dict[str, BouncePolicy] = {}
    for name, table in _table(data.get("kinds", {}), ("kinds",)).items():
        if not KIND_NAME.match(name):
            raise _Problem(("kinds", name), "not a kind name (lowercase, digits, _)")
        table = dict(_table(table, ("kinds", name)))
        if "bounces" in table:
            where = ("kinds", name, "bounces")
            kind_bounces[name] = _bounce_policy(_table(table.pop("bounces"), where), where, bounces)
        kinds[name] = _kind(name, table, kinds.get(name))
    return kinds, kind_bounces


def _bounce_policy(
    table: Mapping[str, Any], where: tuple[str | int, ...], base: BouncePolicy
) -> BouncePolicy:
    known = POLICY_KEYS | ({"feedback_address"} if where == ("bounces",) else set())
    _known(table, known, where)
    try:
        return policy_from_table({k: v for k, v in table.items() if k in POLICY_KEYS}, base)
    except PolicyProblem as problem:
        raise _Problem((*where, problem.key), problem.reason) from None


def _feedback_address(table: Mapping[str, Any]) -> str | None:
    if "feedback_address" not in table:
        return None
    address = _string(table["feedback_address"], ("bounces", "feedback_address"))
    if address.count("@") != 1 or re.search(r"[\s<>]", address):
        raise _Problem(("bounces", "feedback_address"), "must be an email address")
    return address.lower()


WEBHOOK_PROVIDERS = ("ses", "postmark", "mailgun", "sendgrid", "resend")


def _webhooks(raw: object) -> Mapping[str, Mapping[str, Any]]:
    tables = _table(raw, ("webhooks",))
    for provider, table in tables.items():
        if provider not in WEBHOOK_PROVIDERS:
            raise _Problem(
                ("webhooks", provider), f"unknown provider (known: {', '.join(WEBHOOK_PROVIDERS)})"
            )
        _table(table, ("webhooks", provider))
    return MappingProxyType({p: MappingProxyType(dict(t)) for p, t in tables.items()})


def _tunables(data: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for section in ("worker", "smtp"):
        table = _table(data.get(section, {}), (section,))
        known = {k for s, k in _TUNABLES if s == section}
        _known(table, known, (section,))
        for key, value in table.items():
            name, _env, kind = _TUNABLES[(section, key)]
            found[name] = _number(table, key, (section,), 0, whole=kind is int)
            if found[name] <= 0 and key != "shutdown_grace":
                raise _Problem((section, key), "must be a positive number")
            if kind is int:
                found[name] = int(value)
    return found


def _kind(name: str, table: Mapping[str, Any], base: KindPolicy | None) -> KindPolicy:
    where = ("kinds", name)
    _known(table, _KIND_KEYS, where)
    # A kind the file declares is transactional until it says otherwise: one click on an
    # invoice's List-Unsubscribe would suppress the customer for every kind.
    policy = base or KindPolicy(name, priority=5, list_unsubscribe=False)
    changes: dict[str, Any] = {}
    if "priority" in table:
        priority = int(_number(table, "priority", where, 0, whole=True))
        if not 0 <= priority <= 9:
            raise _Problem((*where, "priority"), "must be a whole number from 0 to 9")
        changes["priority"] = priority
    if "concurrency" in table:
        changes["concurrency"] = int(_number(table, "concurrency", where, 1, whole=True))
        if changes["concurrency"] < 1:
            raise _Problem((*where, "concurrency"), "must be at least 1")
    if "max_attempts" in table:
        changes["max_attempts"] = int(_number(table, "max_attempts", where, 1, whole=True))
        if not 1 <= changes["max_attempts"] <= MAX_ATTEMPTS_LIMIT:
            raise _Problem(
                (*where, "max_attempts"), f"must be a whole number from 1 to {MAX_ATTEMPTS_LIMIT}"
            )
    for key, name in (("retry_for", "retry_for_s"), ("expire_after", "expire_after_s")):
        if key in table:
            changes[name] = _number(table, key, where, 0)
            if changes[name] <= 0:
                raise _Problem((*where, key), "must be a positive number of seconds")
    if "backoff" in table:
        changes["retry"] = _backoff(_table(table["backoff"], (*where, "backoff")), where)
    if "rate" in table or "burst" in table:
        changes["rate_limit"] = _rate_limit(table, where, welcome=False)
    if "template" in table:
        template = _string(table["template"], (*where, "template"))
        if not TEMPLATE_NAME.match(template):
            raise _Problem((*where, "template"), "not a template name (a-z, 0-9, _, -)")
        changes["template"] = template
    if "lost" in table:
        lost = _string(table["lost"], (*where, "lost"))
        if lost not in LOST_POLICIES:
            raise _Problem((*where, "lost"), f"must be one of {', '.join(LOST_POLICIES)}")
        changes["lost"] = lost
    if "list_unsubscribe" in table:
        if not isinstance(table["list_unsubscribe"], bool):
            raise _Problem((*where, "list_unsubscribe"), "must be true or false")
        changes["list_unsubscribe"] = table["list_unsubscribe"]
    if "from" in table:
        sender = _string(table["from"], (*where, "from"))
        try:
            changes["from_address"] = str(parse_mailbox(sender))
        except AddressError as exc:
            raise _Problem((*where, "from"), f"{sender!r} is not a valid mailbox ({exc})") from None
    return replace(policy, **changes)


def _backoff(table: Mapping[str, Any], where: tuple[str | int, ...]) -> RetryPolicy:
    inner = (*where, "backoff")
    _known(table, {"base", "cap", "jitter"}, inner)
    default = RetryPolicy()
    base = _number(table, "base", inner, default.base_s)
    cap = _number(table, "cap", inner, max(default.cap_s, base))
    jitter = _number(table, "jitter", inner, default.jitter)
    if base <= 0 or cap < base:
        raise _Problem((*inner, "cap"), "base must be positive and cap at least base")
    if not 0 <= jitter < 1:
        raise _Problem((*inner, "jitter"), "must be from 0 to below 1")
    return RetryPolicy(base_s=base, cap_s=cap, jitter=jitter)


def _rate_limit(
    table: Mapping[str, Any], where: tuple[str | int, ...], *, welcome: bool
) -> RateLimit:
    if welcome:
        _known(table, {"rate", "burst", "welcome_reserve"}, where)
    if "rate" not in table:
        raise _Problem((*where, "rate"), "required (emails per second) when burst is given")
    rate = _number(table, "rate", where, 0)
    if rate <= 0:
        raise _Problem((*where, "rate"), "must be a positive number of emails per second")
    burst = _number(table, "burst", where, max(1.0, rate))
    if burst < 1:
        raise _Problem((*where, "burst"), "must be at least 1")
    reserve = 0.0
    if welcome:
        reserve = _number(table, "welcome_reserve", where, float(int(burst // 4)))
        if reserve < 0 or reserve > burst - 1:
            raise _Problem((*where, "welcome_reserve"), "must be from 0 to burst - 1")
    return RateLimit(rate=rate, burst=burst, reserve=reserve)


def _quirk(raw: object, where: tuple[str | int, ...]) -> Quirk:
    table = _table(raw, where)
    _known(table, {"code", "enhanced", "match", "outcome", "suppress"}, where)
    outcome = _string(table.get("outcome"), (*where, "outcome"))
    if outcome not in CLASSES:
        raise _Problem((*where, "outcome"), f"must be one of {', '.join(CLASSES)}")
    code = None
    if "code" in table:
        code = int(_number(table, "code", where, 0, whole=True))
        if not 200 <= code <= 599:
            raise _Problem((*where, "code"), "must be an SMTP reply code (200-599)")
    enhanced = None
    if "enhanced" in table:
        enhanced = _string(table["enhanced"], (*where, "enhanced"))
        if not re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", enhanced):
            raise _Problem((*where, "enhanced"), "must look like 5.1.1")
    match = None
    if "match" in table:
        match = _string(table["match"], (*where, "match"))
        try:
            re.compile(match)
        except re.error as exc:
            raise _Problem((*where, "match"), f"not a regular expression: {exc}") from None
    if code is None and enhanced is None and match is None:
        raise _Problem(where, "give at least one of code, enhanced, match")
    suppress = table.get("suppress", False)
    if not isinstance(suppress, bool):
        raise _Problem((*where, "suppress"), "must be true or false")
    return Quirk(outcome, code=code, enhanced=enhanced, match=match, suppress=suppress)


def _dkim(raw: object, base: Path) -> DkimKey:
    where: tuple[str | int, ...] = ("dkim",)
    table = _table(raw, where)
    _known(table, {"domain", "selector", "private_key", "headers"}, where)
    domain = _string(table.get("domain"), (*where, "domain"))
    selector = _string(table.get("selector"), (*where, "selector"))
    key_path = base / _string(table.get("private_key"), (*where, "private_key"))
    try:
        key = key_path.read_bytes()
    except OSError as exc:
        raise _Problem((*where, "private_key"), f"cannot read {key_path}: {exc.strerror}") from None
    if b"PRIVATE KEY" not in key:
        raise _Problem((*where, "private_key"), f"{key_path} is not a PEM private key")
    headers = table.get("headers")
    if headers is not None and (
        not isinstance(headers, list) or not all(isinstance(h, str) for h in headers)
    ):
        raise _Problem((*where, "headers"), "must be a list of header names")
    try:
        import dkim  # noqa: F401 - only checks that the optional dependency is there
    except ImportError:
        raise _Problem(where, "DKIM signing needs dkimpy: pip install 'mailq[dkim]'") from None
    return DkimKey(domain, selector, key, tuple(headers) if headers else None)


def _table(value: object, where: tuple[str | int, ...]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Problem(where, "must be a table")
    return value


def _known(table: Mapping[str, Any], known: set[str] | frozenset[str], where: tuple) -> None:  # type: ignore[type-arg]
    for key in table:
        if key not in known:
            raise _Problem((*where, key), f"unknown setting (known: {', '.join(sorted(known))})")


def _string(value: object, where: tuple[str | int, ...]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Problem(where, "required, a non-empty string")
    return value.strip()


def _number(
    table: Mapping[str, Any],
    key: str,
    where: tuple[str | int, ...],
    default: float,
    *,
    whole: bool = False,
) -> float:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Problem((*where, key), "must be a whole number" if whole else "must be a number")
    if whole and not isinstance(value, int):
        raise _Problem((*where, key), "must be a whole number")
    return float(value)


def _line_of(text: str, where: tuple[str | int, ...]) -> int | None:
    """The line a setting is on: the deepest table header of its path, then its key there."""
    lines = text.splitlines()
    headers: list[tuple[int, tuple[str, ...]]] = []
    for number, line in enumerate(lines):
        match = re.match(r"^\s*\[\[?\s*([^\]]+?)\s*\]", line)
        if match:
            names = tuple(p.strip().strip('"') for p in match.group(1).split("."))
            headers.append((number, names))
    strings = [p for p in where if isinstance(p, str)]
    index = next((p for p in where if isinstance(p, int)), 0)
    for depth in range(len(strings), 0, -1):
        hits = [n for n, names in headers if names == tuple(strings[:depth])]
        if len(hits) > index:
            start = hits[index]
            rest = strings[depth:]
            if not rest:
                return start + 1
            return _key_line(lines, start + 1, rest[0]) or start + 1
    if strings:
        first_header = headers[0][0] if headers else len(lines)
        return _key_line(lines[:first_header], 0, strings[0])
    return None


def _key_line(lines: list[str], start: int, key: str) -> int | None:
    pattern = re.compile(r"^\s*\"?" + re.escape(key) + r"\"?\s*=")
    for number in range(start, len(lines)):
        if number > start and lines[number].lstrip().startswith("["):
            return None
        if pattern.match(lines[number]):
            return number + 1
    return None
