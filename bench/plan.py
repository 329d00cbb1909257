"""What a bench run measures: its options, the measurements, and one sample of each.

A measurement is one figure of one system under given parameters (e.g. drain, mailq,
4 processes). Measurements that are compared with each other form a group; a run repeats
every group `repeat` times, interleaved (and with the order inside a group alternating
between rounds) so that drift on a shared machine hits every system alike. New systems
(peers) and new measures are new Measurement entries; the runner and the report take them
as they come.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.databases import Server

# Systems; the peers' are in mailq/bench/peers.py. mailq's own are named mailq*: their
# duplicates and lost count in mailq's totals.
MAILQ = "mailq"
BARE = "bare"
# mailq's drain at the default settings (MAILQ_CONCURRENCY unset: 16 sends in flight).
MAILQ_DEFAULTS = "mailq_defaults"
# The bare loop under the same bound: at most 16 rows (the default concurrency) whose done is
# not committed, the next 16 claimed on a second connection meanwhile (bench/bare_loop.py).
BARE_BOUNDED = "bare_bounded"
# mailq draining a database that holds millions of finished emails (mailq/bench/history.py).
HISTORY = "mailq_history"
# The SMTP ceiling: a bare aiosmtplib client (mailq/bench/smtp.py).
BARE_SMTP = "aiosmtplib"
# The ESP measure (mailq/bench/esp.py): a bare httpx client posting the same Postmark batches,
# and mailq's SMTP backend next to its Postmark one.
BARE_HTTPX = "httpx"
MAILQ_SMTP = "mailq_smtp"


@dataclass(frozen=True, slots=True)
class Options:
    emails: int = 50_000
    one_at_a_time: int = 2_000
    processes: tuple[int, ...] = (1, 2, 4)
    concurrency: int = 200
    batch: int = 100
    wakeup_emails: int = 500
    wakeup_rate: float = 50.0
    wakeup_workers: int = 2
    history_emails: int = 10_000_000
    campaign_recipients: int = 1_000_000
    # Waiting emails next to the history in the dashboard measure.
    dashboard_waiting: int = 100_000
    # An existing database holding the history (migrated, filled once by hand): measured on
    # copies of it, never changed or dropped; None: the run writes its own history.
    history_database: str | None = None
    # 30,000: at 10,000 a side took 2-3 s, and its ratio moved with what ran just before
    # (0.76x-1.00x after the campaign's million-row write; 1.06x-1.23x at 30,000).
    smtp_emails: int = 30_000
    smtp_processes: int = 2
    esp_emails: int = 10_000
    # How long the Postmark-like server takes to answer a request, in milliseconds.
    esp_latency_ms: float = 50.0
    # The held-back-vacuum measure: seconds of drain before the forgotten transaction, how
    # long it stays open, and seconds of drain after it ended.
    vacuum_before_s: float = 30.0
    vacuum_hold_s: float = 120.0
    vacuum_after_s: float = 60.0
    repeat: int = 3
    only: frozenset[str] = frozenset()
    # Measure the installed peers (pgqueuer, procrastinate) too.
    peers: bool = True

    @classmethod
    def quick(cls) -> Options:
        """Small numbers, one round: the run the test suite makes (seconds)."""
        return cls(
            emails=2_000,
            one_at_a_time=200,
            wakeup_emails=50,
            history_emails=20_000,
            campaign_recipients=20_000,
            dashboard_waiting=2_000,
            smtp_emails=300,
            esp_emails=300,
            vacuum_before_s=3.0,
            vacuum_hold_s=4.0,
            vacuum_after_s=3.0,
            repeat=1,
        )

    def wants(self, measure: str) -> bool:
        return not self.only or measure in self.only


@dataclass(slots=True)
class Context:
    """What a measurement may use."""

    server: Server
    options: Options
    logs: Path
    env: Mapping[str, str]
    # Facts a measurement learns once per run (e.g. how long the history took to write).
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Sample:
    """One run of one measurement: its figures (medians are taken over rounds), counts that
    must add up over rounds (duplicates, lost), and details kept in the JSON."""

    figures: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Measurement:
    key: str
    measure: str
    system: str
    unit: str
    params: Mapping[str, Any]
    run: Callable[[Context], Awaitable[Sample]]
    # The figure compared across systems and shown first.
    headline: str = "rate"


@dataclass(frozen=True, slots=True)
class Group:
    """Measurements compared side by side; run one after another in each round."""

    name: str
    members: tuple[Measurement, ...]
