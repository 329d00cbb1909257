"""The MAILQ_CONFIG file read into a Config: load_config checks every section (sections) and
names the file, the line and the reason of the first bad value."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailq.bounces.policy import DEFAULT_POLICY, BouncePolicy
from mailq.compose.dkim import DkimKey
from mailq.compose.message import DEFAULT_FEEDBACK_SENDER_ID
from mailq.compose.templates import TemplateStore
from mailq.config import bounces, sections
from mailq.config.toml import Problem, line_of
from mailq.delivery.replies import BUILTIN_QUIRKS, Quirk
from mailq.errors import ConfigError
from mailq.kinds import BUILTIN_KINDS, KindPolicy, RateLimit
from mailq.settings import BATCH_LIMIT, HTTP_BODY_LIMIT_BYTES, RETENTION_DAYS


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
    except Problem as problem:
        line = line_of(text, problem.where)
        at = f"{path}:{line}" if line else str(path)
        dotted = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in problem.where)
        dotted = dotted.replace(".[", "[")
        raise ConfigError(f"{at}: {dotted}: {problem.reason}") from None


def _build(data: Mapping[str, Any], path: Path) -> Config:
    base = path.resolve().parent
    for key in data:
        if key not in _TOP_KEYS:
            raise Problem((key,), "unknown setting")
    tunables = sections.tunables(data)
    body_limit_bytes, batch_limit, retention_days = sections.limits(data)
    policy = bounces.policy(data)
    return Config(
        kinds=sections.kinds(data),
        quirks=sections.quirks(data),
        templates=sections.templates(data, base),
        backend_rate_limit=sections.backend(data),
        dkim=sections.dkim(data, base),
        unsubscribe_mailto=sections.unsubscribe_mailto(data),
        body_limit_bytes=body_limit_bytes,
        batch_limit=batch_limit,
        retention_days=retention_days,
        feedback_sender_id=sections.feedback_sender_id(data),
        bounces=policy,
        kind_bounces=bounces.kind_policies(data, policy),
        feedback_address=bounces.feedback_address(data),
        webhooks=bounces.webhooks(data),
        tunables=tunables,
        path=path,
    )
