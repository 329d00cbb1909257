"""A private PostgreSQL 15 cluster that a test may stop, restart and crash.

The shared server at 127.0.0.1:5432 is never stopped or restarted by a test; outages are
played on a cluster of the test's own: `initdb` into a temporary folder owned by the
`postgres` OS user (initdb refuses to run as root), its own free port on 127.0.0.1, its
socket in that folder, durability off (nothing in it is worth keeping), trust auth. The
folder is removed whatever happens.

    with private_postgres() as pg:
        url = pg.create_database("mailq")
        pg.migrate("mailq")
        pg.restart("immediate")  # a crash and crash recovery
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from mailq.db.schema import migrate
from tests.support.postgres import create_database, with_database
from tests.support.smtp import free_port

BIN = Path(os.environ.get("MAILQ_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"
START_TIMEOUT_S = 60
STOP_MODES = ("smart", "fast", "immediate")

# Appended to postgresql.conf: loopback only, quick to crash and recover. fsync and
# full-page writes are off (they guard against the machine crashing, which no test does);
# synchronous_commit stays on: a crash of the server (stop -m immediate) must not lose a
# commit that a worker was told of, or the test would count the server's loss as mailq's.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "full_page_writes": "off",
    "jit": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
    "logging_collector": "off",
}


class PrivatePostgresError(Exception):
    """The private PostgreSQL cluster could not be created, started or stopped."""


class PrivatePostgres:
    """One cluster in a temporary folder. Use `private_postgres()`, which always cleans up."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.data = folder / "data"
        self.log = folder / "server.log"

    # -- addresses -------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        return create_database(self.url(), name)

    def migrate(self, database: str = "postgres") -> str:
        """Alembic upgrade head on `database`, as the shared test template is built."""
        url = with_database(self.url(), database)
        migrate(url)
        return url

    # -- lifecycle -------------------------------------------------------------------------

    def initdb(self) -> None:
        self._run(
            BIN / "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        lines = [f"{k} = {v}" for k, v in SETTINGS.items()]
        lines += [f"port = {self.port}", f"unix_socket_directories = '{self.folder}'"]
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n# mailq tests\n" + "\n".join(lines) + "\n")

    def start(self) -> None:
        self._pg_ctl("start", "--log", str(self.log))

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m mode`: `immediate` is a crash (recovery at the next start)."""
        self._pg_ctl("stop", "--mode", _checked(mode))

    def restart(self, mode: str = "immediate") -> None:
        """`pg_ctl restart -m mode`: stopped and started again, waiting until it accepts."""
        self._pg_ctl("restart", "--mode", _checked(mode), "--log", str(self.log))

    @property
    def running(self) -> bool:
        status = subprocess.run(
            self._as_owner(BIN / "pg_ctl", "status", "--pgdata", str(self.data)),
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def accepts(self) -> bool:
        """Does the server answer a query right now?"""
        try:
            with psycopg.connect(self.url(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    # -- running the server's programs as its owner ----------------------------------------

    def _pg_ctl(self, action: str, *options: str) -> None:
        self._run(
            BIN / "pg_ctl",
            action,
            "--pgdata",
            str(self.data),
            "--wait",
            "--timeout",
            str(START_TIMEOUT_S),
            "--silent",
            *options,
        )

    def _run(self, program: Path, *arguments: str) -> None:
        result = subprocess.run(
            self._as_owner(program, *arguments),
            capture_output=True,
            check=False,
            cwd=self.folder,
            timeout=START_TIMEOUT_S + 30,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            raise PrivatePostgresError(
                f"{program.name} {arguments[0]} failed ({result.returncode}): {output}\n"
                f"server log:\n{self.server_log()[-2000:]}"
            )

    @staticmethod
    def _as_owner(program: Path, *arguments: str) -> list[str]:
        command = [str(program), *arguments]
        if os.geteuid() == 0:
            # initdb and postgres refuse root: run them as the postgres OS user.
            return ["runuser", "-u", OS_USER, "--", *command]
        return command


def _checked(mode: str) -> str:
    if mode not in STOP_MODES:
        raise ValueError(f"pg_ctl mode must be one of {', '.join(STOP_MODES)}, got {mode!r}")
    return mode


def available() -> str | None:
    """Why a private cluster cannot be started here, or None when it can."""
    if not (BIN / "initdb").exists():
        return f"no PostgreSQL programs in {BIN} (set MAILQ_TEST_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root and there is no {OS_USER!r} OS user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    return None


@contextmanager
def private_postgres(attempts: int = 3) -> Iterator[PrivatePostgres]:
    """A started private cluster; stopped (immediately) and deleted on exit."""
    problem = available()
    if problem:
        raise PrivatePostgresError(problem)
    folder = Path(tempfile.mkdtemp(prefix="mailq-private-pg-"))
    try:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(OS_USER)
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        os.chmod(folder, 0o700)
        cluster = PrivatePostgres(folder, free_port())
        cluster.initdb()
        for attempt in range(attempts):
            try:
                cluster.start()
                break
            except PrivatePostgresError:
                # The free port was taken in the meantime: try another one.
                if attempt == attempts - 1:
                    raise
                cluster.port = free_port()
                with open(cluster.data / "postgresql.conf", "a") as conf:
                    conf.write(f"port = {cluster.port}\n")
        try:
            yield cluster
        finally:
            with contextlib.suppress(PrivatePostgresError, subprocess.TimeoutExpired):
                if cluster.running:
                    cluster.stop("immediate")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
