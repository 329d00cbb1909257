"""Prometheus metrics, correct under `uvicorn --workers N`.

Two sources:
- Events counted where they happen (attempts by outcome, send duration, emails queued, HTTP
  requests): prometheus-client's multiprocess mode, each process writing its own files in
  one shared folder, summed at scrape time. So a scrape that lands on any process reports
  the whole service.
- The queue's state (emails by kind and state, oldest due age, live workers): read from
  Postgres at scrape time. It is the same for every process and includes standalone
  workers, so it is never summed.

The folder is PROMETHEUS_MULTIPROC_DIR when set (wipe it between runs, as prometheus-client
says; `mailq serve` does). Otherwise `$MAILQ_HOME/metrics/<parent pid>`, which is the same for
all workers of one uvicorn (they share the supervisor as parent) and private: made mode 0700,
and refused unless this user owns it and no one else may write to it (a folder in a shared
place such as /tmp could be made beforehand by another user, who would then plant counters).
The folders of parents that no longer run are removed when a process starts. Files of
processes that no longer run are removed too, so counters of a worker that died restart from
the living ones (Prometheus reads that as a counter reset).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailq.errors import MailqError
from mailq.models import AttemptResult
from mailq.settings import default_home

ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROUTE_KEY = "mailq.route"
SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_FILE = re.compile(r"_(\d+)\.db$")
# Methods are labels as they are; any other method a client invents counts as "other", so
# that requests cannot create series without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class UnsafeMetricsFolder(MailqError):
    """The metrics folder is not private to this user."""


def multiprocess_dir(environ: Mapping[str, str], home: Path | None = None) -> Path:
    """The folder of this service's metrics files (made, checked; see the module's doc)."""
    configured = environ.get(ENV)
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _check_private(folder, mode=False)
        return folder
    base = (home or default_home(environ)) / "metrics"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    _check_private(base, mode=True, forbidden=0o022)
    remove_dead_folders(base)
    folder = base / str(os.getppid())
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    _check_private(folder, mode=True, forbidden=0o077)
    return folder


def _check_private(folder: Path, *, mode: bool, forbidden: int = 0o077) -> None:
    """Refuse a folder that is not this user's, or (`mode`) whose mode has a `forbidden` bit
    (others may write into it, or also read it)."""
    info = folder.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeMetricsFolder(f"metrics folder {folder}: not a folder")
    if info.st_uid != os.getuid():
        raise UnsafeMetricsFolder(
            f"metrics folder {folder}: owned by uid {info.st_uid}, not by this user"
        )
    if mode and info.st_mode & forbidden:
        raise UnsafeMetricsFolder(
            f"metrics folder {folder}: mode {stat.S_IMODE(info.st_mode):o}, others may use "
            "it (chmod 700 it or remove it)"
        )


def remove_dead_folders(base: Path) -> int:
    """Remove the folders under `base` of parent processes that no longer run."""
    removed = 0
    for path in base.iterdir():
        if path.name.isdigit() and path.is_dir() and not _alive(int(path.name)):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_files(folder: Path) -> int:
    removed = 0
    for path in folder.glob("*.db"):
        match = _FILE.search(path.name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


class Metrics:
    """This process's event metrics; one instance per process (see `metrics()`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # Not registered anywhere: scrapes read every process's files instead.
        self.attempts = Counter(
            "mailq_attempts",
            "Send attempts made by this service's embedded workers, by kind and outcome.",
            ["kind", "outcome"],
            registry=None,
        )
        self.send_seconds = Histogram(
            "mailq_send_duration_seconds",
            "Time one send took (building the message and the SMTP conversation).",
            ["kind"],
            buckets=SEND_BUCKETS,
            registry=None,
        )
        self.queued = Counter(
            "mailq_emails_queued",
            "Emails queued through the HTTP API, by kind.",
            ["kind"],
            registry=None,
        )
        self.requests = Counter(
            "mailq_http_requests",
            "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"],
            registry=None,
        )
        self.request_seconds = Histogram(
            "mailq_http_request_duration_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            buckets=HTTP_BUCKETS,
            registry=None,
        )

    def observe_attempt(self, result: AttemptResult, seconds: float) -> None:
        kind = result.email.kind
        self.attempts.labels(kind, result.outcome.value).inc()
        self.send_seconds.labels(kind).observe(seconds)

    def count_queued(self, kinds: Iterable[str]) -> None:
        tally: dict[str, int] = {}
        for kind in kinds:
            tally[kind] = tally.get(kind, 0) + 1
        for kind, n in tally.items():
            self.queued.labels(kind).inc(n)

    def render(self, queue_state: Collector | None) -> bytes:
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
            registry, path=str(self.folder)
        )
        if queue_state is not None:
            registry.register(queue_state)
        return generate_latest(registry)


_lock = threading.Lock()
_instance: Metrics | None = None


def metrics(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Metrics:
    """The process's Metrics, set up on first use: the multiprocess folder is chosen and
    exported (prometheus-client reads it from the environment), and its value class is
    switched to the multiprocess one if prometheus_client was imported before that."""
    global _instance
    with _lock:
        if _instance is None:
            folder = multiprocess_dir(os.environ if environ is None else environ, home)
            os.environ[ENV] = str(folder)
            remove_dead_files(folder)
            if not getattr(values.ValueClass, "_multiprocess", False):
                values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
            _instance = Metrics(folder)
        return _instance


class QueueState(Collector):
    """The queue's state read from Postgres for one scrape."""

    def __init__(
        self,
        counts: Sequence[Mapping[str, Any]] | None,
        workers: Sequence[Mapping[str, Any]] | None,
        breakers: Sequence[Mapping[str, Any]] = (),
        rates: Sequence[Mapping[str, Any]] = (),
        bounce_breakers: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self._counts = counts
        self._workers = workers
        self._breakers = breakers
        self._rates = rates
        self._bounce_breakers = bounce_breakers

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("mailq_database_up", "1 when the queue's database answered.")
        up.add_metric([], 0 if self._counts is None else 1)
        yield up
        if self._counts is None or self._workers is None:
            return
        emails = GaugeMetricFamily(
            "mailq_emails",
            "Emails by kind and state (finished ones until pruned).",
            labels=["kind", "state"],
        )
        oldest = GaugeMetricFamily(
            "mailq_oldest_due_age_seconds",
            "Age of the oldest email that is due and not yet sent, by kind.",
            labels=["kind"],
        )
        ages: dict[str, float] = {}
        for row in self._counts:
            emails.add_metric([row["kind"], row["state"]], row["count"])
            age = row["oldest_due_age_s"]
            if age is not None:
                ages[row["kind"]] = max(ages.get(row["kind"], 0.0), age)
        for kind, age in sorted(ages.items()):
            oldest.add_metric([kind], age)
        live = GaugeMetricFamily("mailq_workers_live", "Workers holding a live lease.")
        live.add_metric([], len(self._workers))
        in_flight = GaugeMetricFamily(
            "mailq_emails_in_flight", "Emails being sent by live workers."
        )
        in_flight.add_metric([], sum(w["in_flight"] for w in self._workers))
        yield from (emails, oldest, live, in_flight)
        yield from self._breaker_metrics()
        yield from bounce_metrics(self._rates, self._bounce_breakers)

    def _breaker_metrics(self) -> Iterable[Metric]:
        is_open = GaugeMetricFamily(
            "mailq_backend_breaker_open",
            "1 while the backend's circuit breaker is open (its sends paused, probed).",
            labels=["backend"],
        )
        deferred = GaugeMetricFamily(
            "mailq_backend_breaker_deferred",
            "Attempts deferred since the backend's breaker last opened.",
            labels=["backend"],
        )
        open_for = GaugeMetricFamily(
            "mailq_backend_breaker_open_seconds",
            "How long the backend's breaker has been open (0 when closed).",
            labels=["backend"],
        )
        for row in self._breakers:
            opened = row["state"] == "open"
            is_open.add_metric([row["backend"]], 1 if opened else 0)
            deferred.add_metric([row["backend"]], row["deferred"])
            open_for.add_metric([row["backend"]], row["open_for_s"] if opened else 0.0)
        yield from (is_open, deferred, open_for)


METRIC_CAMPAIGNS = 50  # campaigns whose rates /metrics shows, the newest


def bounce_metrics(
    rates: Sequence[Mapping[str, Any]], breakers: Sequence[Mapping[str, Any]]
) -> Iterable[Metric]:
    """Per kind (events of the last 14 days) and per campaign (the newest 50): emails sent,
    events by outcome, the hard-bounce and complaint rates; and the campaigns the bounce
    breaker paused, the kinds whose breaker tripped."""
    labels = ["kind", "campaign"]
    sent = GaugeMetricFamily("mailq_bounce_sent", "Emails sent (the rates' base).", labels=labels)
    events = GaugeMetricFamily(
        "mailq_delivery_events",
        "Events after the server said 250, by outcome (delivered, hard_bounced, soft_bounced, "
        "rejected: refused about the sender, complained, unsubscribed, deferred).",
        labels=[*labels, "outcome"],
    )
    hard = GaugeMetricFamily(
        "mailq_hard_bounce_rate",
        "Hard bounces and refusals about the sender per email sent.",
        labels=labels,
    )
    complaint = GaugeMetricFamily(
        "mailq_complaint_rate", "Complaints per email sent.", labels=labels
    )
    kinds = [r for r in rates if r["campaign_id"] is None]
    # The newest campaigns only: every campaign ever sent would be series without end.
    newest = sorted(
        (r for r in rates if r["campaign_id"] is not None), key=lambda r: -r["campaign_id"]
    )
    for row in kinds + newest[:METRIC_CAMPAIGNS]:
        key = [row["kind"], "" if row["campaign_id"] is None else str(row["campaign_id"])]
        sent.add_metric(key, row["sent"])
        for outcome in _OUTCOMES:
            events.add_metric([*key, outcome], row[outcome])
        hard.add_metric(key, row["hard_bounce_rate"] or 0.0)
        complaint.add_metric(key, row["complaint_rate"] or 0.0)
    paused = GaugeMetricFamily(
        "mailq_campaign_bounce_paused",
        "1 for a campaign the bounce breaker paused (reason: hard_bounce_rate or complaint_rate).",
        labels=["campaign", "reason"],
    )
    tripped = GaugeMetricFamily(
        "mailq_kind_bounce_breaker",
        "1 for a kind whose bounce breaker tripped in the last 14 days (a warning: mailq does "
        "not pause a kind itself).",
        labels=["kind", "reason"],
    )
    recent = datetime.now(UTC) - timedelta(days=14)
    for row in breakers:
        why = "complaint_rate" if "complaint rate" in row["reason"] else "hard_bounce_rate"
        if row["scope"] == "campaign" and row.get("campaign_status") == "paused":
            paused.add_metric([row["key"], why], 1)
        elif row["scope"] == "kind" and row["tripped_at"] > recent:
            tripped.add_metric([row["key"], why], 1)
    yield from (sent, events, hard, complaint, paused, tripped)


_OUTCOMES = (
    "delivered",
    "hard_bounced",
    "soft_bounced",
    "rejected",
    "complained",
    "unsubscribed",
    "deferred",
)


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (never the raw path, so
    ids do not multiply the series)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get(ROUTE_KEY, "unmatched")
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(time.perf_counter() - started)
