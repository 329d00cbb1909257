"""The embedded PostgreSQL: what mailq uses when no MAILQ_DATABASE_URL is configured.

It is the `pgserver` package's PostgreSQL, with its data under `$MAILQ_HOME/pg`, reached over
a Unix socket (no TCP port is opened). Every process that asks for it (`mailq up`, a worker,
the service, a CLI command) attaches to the same server, starting it if needed; the last of
them to exit stops it. The data stays, so the next start finds the same queue.

For development and first use: production runs against a PostgreSQL you operate, named by
MAILQ_DATABASE_URL.

Run as root, pgserver creates a system user `pgserver` to own the data folder and adds
read and traverse permission for everyone on each parent folder of it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from mailq.errors import ConfigError
from mailq.settings import Settings

logger = logging.getLogger(__name__)

DATABASE_NAME = "mailq"
DATA_FOLDER = "pg"
HANDLES_FILE = ".handle_pids.json"  # pgserver's list of processes holding the server


@dataclass(frozen=True, slots=True)
class EmbeddedDatabase:
    """A running embedded server, as seen from this process."""

    data: Path
    url: str
    admin_url: str
    psql: Path
    _server: Any

    def stop(self) -> None:
        """Let go of the server; it stops when no other process holds it. Idempotent."""
        self._server.cleanup()


def data_folder(home: Path) -> Path:
    return home / DATA_FOLDER


def start(home: Path) -> EmbeddedDatabase:
    """Start (or attach to) the embedded server under `home` and make sure the `mailq`
    database exists. Raises ConfigError when pgserver is missing or cannot start."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.simplefilter("ignore")
        try:
            from pgserver import get_server  # type: ignore[attr-defined]
            from pgserver._commands import POSTGRES_BIN_PATH
        except ImportError as exc:
            raise ConfigError(
                "MAILQ_DATABASE_URL is not set and the embedded PostgreSQL (the pgserver "
                f"package) is not available: {exc}"
            ) from None
    data = data_folder(home)
    home.mkdir(parents=True, exist_ok=True)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        logger.warning(
            "running as root: pgserver runs PostgreSQL as system user 'pgserver' (creating it "
            "if needed) and adds read/traverse permission for everyone on every parent folder "
            "of %s; set MAILQ_HOME elsewhere, or MAILQ_DATABASE_URL, if that is not wanted",
            data,
        )
    _forget_dead_handles(data)
    try:
        server = get_server(data, cleanup_mode="stop")
    except Exception as exc:  # pgserver raises bare subprocess/OS errors
        log = data / "log"
        raise ConfigError(
            f"the embedded PostgreSQL in {data} did not start ({type(exc).__name__}); "
            f"last line of its log ({log}): {_last_line(log)}"
        ) from exc
    admin_url: str = server.get_uri()
    _create_database(admin_url)
    return EmbeddedDatabase(
        data=data,
        url=server.get_uri(DATABASE_NAME),
        admin_url=admin_url,
        psql=Path(POSTGRES_BIN_PATH) / "psql",
        _server=server,
    )


_attached: dict[Path, EmbeddedDatabase] = {}


def resolve(settings: Settings) -> Settings:
    """`settings` with a database URL: the configured one, else the embedded server's
    (started on first use, held until this process exits), with a warning."""
    if settings.database_url:
        return settings
    return settings.with_overrides(database_url=database_url(settings))


def database_url(settings: Settings) -> str:
    """The URL of the queue's database: MAILQ_DATABASE_URL, or the embedded default."""
    if settings.database_url:
        return settings.database_url
    embedded = _attached.get(settings.home)
    if embedded is None:
        logger.warning(
            "MAILQ_DATABASE_URL is not set: using the embedded PostgreSQL in %s "
            "(for development; set MAILQ_DATABASE_URL in production)",
            data_folder(settings.home),
        )
        embedded = start(settings.home)
        _attached[settings.home] = embedded
    return embedded.url


def _create_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if exists:
            return
        # Another process may create it at the same moment.
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(f"CREATE DATABASE {DATABASE_NAME}")  # a constant name


def _forget_dead_handles(data: Path) -> None:
    """Drop processes that died without letting go (kill -9) from pgserver's list of
    holders, so the last live holder still stops the server when it exits."""
    handles = data / HANDLES_FILE
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty)"
