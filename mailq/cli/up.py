"""`mailq up`: everything on one machine with zero configuration.

The database (MAILQ_DATABASE_URL, else the embedded PostgreSQL under MAILQ_HOME), migrations,
the HTTP service (`uvicorn service.app:app`) and worker processes (`python -m mailq.worker`),
delivering to the file outbox unless MAILQ_BACKEND says otherwise. Ctrl-C stops the children
gracefully (a second Ctrl-C kills them), then lets go of the embedded database; its data stays
for the next `mailq up`.

The children run in their own sessions, so a terminal's Ctrl-C reaches `mailq up` alone and
each child gets exactly one SIGTERM from it (a second signal would make a worker exit at once).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlsplit

from mailq.cli.children import (
    SERVICE_APP,
    STOP_SIGNALS,
    WORKER_MODULE,
    child_environment,
    spawn,
)
from mailq.cli.options import settings_for
from mailq.db import embedded
from mailq.db.schema import HEAD, migrate
from mailq.errors import ConfigError
from mailq.redaction import redact, redact_url
from mailq.settings import Settings, default_home

READY_TIMEOUT_S = 60.0
STOP_EXTRA_S = 10.0
TOKENS_FILE = "tokens"


class Up:
    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        workers: int = 1,
    ) -> None:
        if workers < 0:
            raise ConfigError("--workers cannot be negative")
        self.settings = settings
        self.host = host
        self.port = port
        self.workers = workers
        self._children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._signals = 0
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- the whole run ---------------------------------------------------------------------

    def run(self) -> int:
        if not _has_service_app():
            raise ConfigError("the HTTP service (service/app.py) is not part of this install")
        _check_port_free(self.host, self.port)
        settings = self.settings
        home = settings.home
        _say(f"MAILQ_HOME is {home}")
        database: embedded.EmbeddedDatabase | None = None
        if settings.database_url:
            url = settings.database_url
        else:
            _say(
                f"MAILQ_DATABASE_URL is not set: starting the embedded PostgreSQL in {home / 'pg'}"
            )
            database = embedded.start(home)
            url = database.url
        # Ctrl-C, a stop request, or the terminal closing: all stop everything cleanly.
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        try:
            migrate(url)
            env = self._child_env(url)
            self._spawn(
                "service",
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    SERVICE_APP,
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                ],
                env,
            )
            for _ in range(self.workers):
                self._spawn("worker", [sys.executable, "-m", WORKER_MODULE], env)
            if not self._wait_ready():
                return 1 if not self._stop.is_set() else 0
            self._print_summary(url, database)
            return self._supervise()
        finally:
            self._stop_children()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if database is not None:
                database.stop()
                _say("embedded PostgreSQL let go (its data stays for the next `mailq up`)")

    # -- children --------------------------------------------------------------------------

    def _child_env(self, database_url: str) -> dict[str, str]:
        return child_environment(
            {
                "MAILQ_DATABASE_URL": database_url,
                "MAILQ_HOME": str(self.settings.home),
                "MAILQ_BACKEND": self.settings.backend_url,
                # `mailq up` runs the workers itself, each in a process of its own;
                # with --workers 0 the service's embedded worker sends instead.
                "MAILQ_EMBEDDED_WORKER": "0" if self.workers else "1",
                "PYTHONUNBUFFERED": "1",
            }
        )

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str]) -> None:
        self._children.append((name, spawn(argv, env)))

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._stop.is_set():
            dead = self._dead_child()
            if dead:
                _say(f"the {dead} exited before the service was ready; stopping")
                return False
            if _healthy(self.url):
                return True
            if time.monotonic() > deadline:
                _say(
                    f"the service did not answer at {self.url}/healthz within "
                    f"{READY_TIMEOUT_S:.0f}s; stopping"
                )
                return False
            self._stop.wait(0.2)
        return False

    def _supervise(self) -> int:
        while not self._stop.wait(0.5):
            dead = self._dead_child()
            if dead:
                _say(f"the {dead} exited unexpectedly; stopping everything")
                return 1
        return 0

    def _dead_child(self) -> str | None:
        for name, process in self._children:
            if process.poll() is not None:
                return f"{name} (pid {process.pid}, exit code {process.returncode})"
        return None

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            _say("stopping (Ctrl-C again to kill at once)")
            self._stop.set()
        else:
            for _name, process in self._children:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()

    def _stop_children(self) -> None:
        for _name, process in self._children:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace_s + STOP_EXTRA_S
        for name, process in self._children:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _say(f"the {name} (pid {process.pid}) did not stop in time; killing it")
                process.kill()
                process.wait()
        self._children.clear()

    # -- what the user sees ----------------------------------------------------------------

    def _workers_text(self) -> str:
        if not self.workers:
            return "the service's embedded worker"
        return f"{self.workers} (python -m mailq.worker)"

    def _env_prefix(self) -> str:
        """What another shell needs to reach the same queue."""
        if self.settings.database_url:
            # The password stays out of the output: the user has the URL already.
            return f"MAILQ_DATABASE_URL={shlex.quote(redact_url(self.settings.database_url))} "
        if self.settings.home != default_home(os.environ).resolve():
            return f"MAILQ_HOME={shlex.quote(str(self.settings.home))} "
        return ""

    def _print_summary(self, database_url: str, database: embedded.EmbeddedDatabase | None) -> None:
        client, admin = read_tokens(self.settings)
        backend = self.settings.backend_url
        parts = urlsplit(backend)
        outbox = unquote(parts.path) if parts.scheme == "file" else None
        lines = [
            "",
            "mailq is up.",
            f"  MAILQ_HOME    {self.settings.home}",
            f"  service       {self.url}   (API description: {self.url}/openapi.json)",
            f"  dashboard     {self.url}/dashboard   (sign in with the admin or viewer token)",
            f"  database      {redact_url(database_url)}" + ("   (embedded)" if database else ""),
        ]
        if database is not None:
            lines.append(
                f"  psql          {shlex.quote(str(database.psql))} "
                f"{shlex.quote(redact_url(database_url))}"
            )
        lines += [
            f"  mail lands in "
            f"{outbox + '  (one .eml file per email)' if outbox else redact_url(backend)}",
            f"  client token  {client or '(see ' + str(self.settings.home / TOKENS_FILE) + ')'}",
            f"  admin token   {admin or '(see ' + str(self.settings.home / TOKENS_FILE) + ')'}",
            f"  workers       {self._workers_text()}, schema {HEAD}",
            "",
            "Queue an email:",
            f"  curl -s {self.url}/v1/emails -H 'Authorization: Bearer {client or 'TOKEN'}' \\",
            "       -H 'Content-Type: application/json' \\",
            '       -d \'{"to": "ann@example.com", "subject": "Hello", "text": "Hi Ann"}\'',
            f"See the queue:  {self._env_prefix()}mailq status",
            "Press Ctrl-C to stop.",
            "",
        ]
        print(redact("\n".join(lines)), flush=True)


def read_tokens(settings: Settings) -> tuple[str | None, str | None]:
    """The first client and admin token: from the environment, else from the file the
    service generated into MAILQ_HOME (JSON, or NAME=value lines)."""
    client = settings.api_tokens[0] if settings.api_tokens else None
    admin = settings.admin_tokens[0] if settings.admin_tokens else None
    if client and admin:
        return client, admin
    try:
        text = (settings.home / TOKENS_FILE).read_text(encoding="utf-8")
    except OSError:
        return client, admin
    found = _parse_tokens(text)
    return client or found.get("client"), admin or found.get("admin")


def _parse_tokens(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        items = list(data.items())
    else:
        items = []
        for line in text.splitlines():
            for separator in ("=", ":"):
                if separator in line and not line.lstrip().startswith("#"):
                    key, _, value = line.partition(separator)
                    items.append((key, value))
                    break
    for key, value in items:
        if isinstance(value, list):
            value = value[0] if value else ""
        if not isinstance(value, str):
            continue
        value = value.split(",")[0].strip().strip("'\"")
        name = str(key).lower()
        role = (
            "admin"
            if "admin" in name
            else "client"
            if ("api" in name or "client" in name)
            else None
        )
        if role and value and role not in pairs:
            pairs[role] = value
    return pairs


def _has_service_app() -> bool:
    try:
        return importlib.util.find_spec("mailq.service.app") is not None
    except ModuleNotFoundError:
        return False


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"{host}:{port} is taken ({exc.strerror}): is mailq already up? "
                "Or choose another with --port"
            ) from None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _say(message: str) -> None:
    print(f"mailq up: {redact(message)}", file=sys.stderr, flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    return Up(settings_for(args), host=args.host, port=args.port, workers=args.workers).run()


def add_commands(commands: Any) -> None:
    up = commands.add_parser(
        "up", help="everything on this machine: database, service, worker, file outbox"
    )
    up.add_argument("--host", default="127.0.0.1", help="the service's address (127.0.0.1)")
    up.add_argument("--port", type=int, default=8000, help="the service's port (8000)")
    up.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes to run (1); 0: the service's embedded worker sends",
    )
    up.set_defaults(handler=cmd_up)
