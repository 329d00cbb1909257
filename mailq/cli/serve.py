"""`mailq serve`: the HTTP service (`uvicorn mailq.service.app:app`), its embedded workers in
each process, after a check that the database's schema is the one this code knows.

uvicorn runs as a child process that gets the settings in its environment (the database URL
this command resolved, --concurrency, the metrics folder); this process waits for it and
passes stop signals on."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg

from mailq.cli.children import SERVICE_APP, child_environment, run_to_the_end
from mailq.cli.options import database_url, settings_for
from mailq.db.connection import DATABASE_ERRORS, unavailable
from mailq.db.schema import ensure_current

METRICS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONNECT_TIMEOUT_S = 10
# uvicorn's graceful shutdown waits this much longer than the workers' grace period.
SHUTDOWN_EXTRA_S = 5


async def check_schema(url: str) -> None:
    """DatabaseUnavailable or SchemaMismatch before anything starts."""
    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    except DATABASE_ERRORS as exc:
        raise unavailable(exc) from None
    try:
        await ensure_current(conn)
    finally:
        await conn.close()


def metrics_dir(environ: Mapping[str, str]) -> Path:
    """One fresh folder for the metrics of all the service's processes (prometheus-client's
    multiprocess mode): PROMETHEUS_MULTIPROC_DIR emptied of an earlier run's files, or a new
    temporary folder."""
    configured = environ.get(METRICS_VARIABLE)
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
        return folder
    return Path(tempfile.mkdtemp(prefix="mailq-metrics-"))


def uvicorn_argv(args: argparse.Namespace, grace_s: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        SERVICE_APP,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        str(args.workers),
        "--log-level",
        args.log_level.lower(),
        "--timeout-graceful-shutdown",
        str(int(grace_s) + SHUTDOWN_EXTRA_S),
    ]


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    url = database_url(settings)
    asyncio.run(check_schema(url))
    created = METRICS_VARIABLE not in os.environ
    folder = metrics_dir(os.environ)
    # The service's processes read their settings from their environment.
    given = {"MAILQ_DATABASE_URL": url, METRICS_VARIABLE: str(folder)}
    if args.concurrency is not None:
        given["MAILQ_CONCURRENCY"] = str(args.concurrency)
    try:
        return run_to_the_end(
            uvicorn_argv(args, settings.shutdown_grace_s), child_environment(given)
        )
    finally:
        if created:
            shutil.rmtree(folder, ignore_errors=True)


def add_commands(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run the HTTP service (uvicorn service.app:app), workers built in"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    serve.add_argument("--concurrency", type=int, help="sends in flight per embedded worker")
    serve.set_defaults(handler=cmd_serve)
