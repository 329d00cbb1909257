"""The MAILQ_CONFIG file (TOML): kinds, rate limits, provider quirks, templates, DKIM, tunables.

Read once at the edge of a process (`load_settings`, environment); a bad file fails at start
with the file, the line and the reason (file: the Config and its loading; sections: each
section read into its value; toml: values checked with their path, and their line). Every
section is optional::

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

    [bounces]                          # and [kinds.X.bounces], [webhooks.*]: config.bounces
    feedback_address = "fbl@bounces.example.com"

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

from mailq.compose.dkim import DkimKey
from mailq.config.environment import apply_tunables, from_environment, load_settings
from mailq.config.file import DEFAULT_CONFIG, Config, load_config

__all__ = [
    "DEFAULT_CONFIG",
    "Config",
    "DkimKey",
    "apply_tunables",
    "from_environment",
    "load_config",
    "load_settings",
]
