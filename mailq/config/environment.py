"""The settings of a process: MAILQ_* env vars and the MAILQ_CONFIG file they name, where an
env var wins over the file's value for the same thing."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

from mailq.config.file import DEFAULT_CONFIG, Config, load_config
from mailq.config.sections import TUNABLES
from mailq.errors import ConfigError
from mailq.settings import RETENTION_DAYS, Settings


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
        env_name = next((e for f, e, _t in TUNABLES.values() if f == name), None)
        if env_name and environ.get(env_name, "").strip():
            continue
        changes[name] = value
    if not changes:
        return settings
    try:
        return settings.with_overrides(**changes)
    except ConfigError as exc:
        raise ConfigError(f"{config.path}: {exc}") from None
