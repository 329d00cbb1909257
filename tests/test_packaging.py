"""The wheel is the product: built from the sources and installed into a venv outside the
repository, it migrates a fresh database, sends an email through a worker and serves the HTTP
app; it installs no top-level package but `mailq`, and holds every file of the package.

The slow tests are marked `wheel` (about 30 s: the wheel is built and installed once per
session). They run in CI like every other test; `-m "not wheel"` leaves them out locally.

To stay fast the venv gets the dependencies from the running environment (one .pth line
naming its site-packages) and the wheel is installed with `--no-deps`; mailq itself is the
wheel's copy, which `mailq.__file__` proves. The dependencies' declarations are not what is
tested here (the README's run command installs them for real).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from zipfile import ZipFile

import httpx
import psycopg
import pytest

from mailq.db.schema import HEAD
from tests.support import postgres
from tests.support.service import wait_ready
from tests.support.smtp import free_port
from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
# What the wheel is built from (the Dockerfile copies the same).
SOURCES = ("pyproject.toml", "README.md", "mailq", "migrations")
JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
STEP_S = 120.0
PIP_OFFLINE = ("--no-deps", "--no-index", "--no-compile")


@dataclass(frozen=True)
class Venv:
    root: Path
    python: Path
    mailq: Path
    folder: Path  # a work folder outside the repository, the cwd of every command

    def env(self, **settings: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("MAILQ_") and k not in {"PYTHONPATH", "PROMETHEUS_MULTIPROC_DIR"}
        }
        env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        env.update({f"MAILQ_{k.upper()}": v for k, v in settings.items()})
        return env

    def run(self, *argv: str, env: dict[str, str], stdin: str | None = None) -> str:
        result = subprocess.run(
            argv,
            env=env,
            cwd=self.folder,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=STEP_S,
        )
        assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stderr}"
        return result.stdout


def _setuptools_is_enough() -> bool:
    """Build without isolation (seconds, not half a minute) when the running environment has
    what pyproject.toml's [build-system] asks for."""
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
        importlib.metadata.version("wheel")
    except importlib.metadata.PackageNotFoundError:
        return False
    return major >= 68


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built by pip from a clean copy of the sources (setuptools reuses a build/
    folder it finds, which could smuggle deleted modules into the wheel)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=JUNK)
        else:
            shutil.copy2(path, source / name)
    argv = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(root)]
    if _setuptools_is_enough():
        argv.append("--no-build-isolation")
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    (built,) = root.glob("mailq-*.whl")
    return built


@pytest.fixture(scope="session")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    root = tmp_path_factory.mktemp("venv")
    assert not root.is_relative_to(REPO), "the venv must live outside the repository"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies: the running environment's site-packages, after the venv's own (a plain
    # path in a .pth file: that folder's own .pth files, such as an editable mailq's, are not run).
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "_mailq_test_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", *PIP_OFFLINE, str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    folder = tmp_path_factory.mktemp("work")
    found = Venv(root, python, root / "bin" / "mailq", folder)
    where = found.run(
        str(python), "-c", "import mailq; print(mailq.__file__)", env=found.env()
    ).strip()
    assert Path(where).is_relative_to(root), f"mailq imported from {where}, not from the wheel"
    return found


@pytest.fixture
def empty_database(pg_admin_url: str) -> Iterator[str]:
    """A database with no mailq schema at all: `mailq migrate` builds it."""
    name = f"mailq_w_{uuid.uuid4().hex[:16]}"
    url = postgres.create_database(pg_admin_url, name)
    try:
        yield url
    finally:
        postgres.drop_database(pg_admin_url, name)


def wheel_files(wheel: Path) -> set[str]:
    with ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        record = archive.read(name)
    return {line.split(",")[0] for line in record.decode("utf-8").splitlines() if line}


def package_dirs() -> dict[str, Path]:
    """Each package root and the folder it is built from (pyproject's package-dir)."""
    mapping = PYPROJECT["tool"]["setuptools"].get("package-dir", {})
    return {"mailq": REPO / "mailq", **{k: REPO / v for k, v in mapping.items()}}


def source_files() -> dict[str, Path]:
    """Every file of the package as the wheel names it, from git (or the folders, outside a
    checkout), caches left out."""
    files: dict[str, Path] = {}
    for package, folder in package_dirs().items():
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "."],
            cwd=folder,
            capture_output=True,
        )
        if listed.returncode == 0:
            relative = [Path(p) for p in listed.stdout.decode().split("\0") if p]
        else:
            relative = [p.relative_to(folder) for p in folder.rglob("*") if p.is_file()]
        for path in relative:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            if not (folder / path).is_file():  # deleted, not yet committed
                continue
            name = "/".join([*package.split("."), *path.parts])
            files.setdefault(name, folder / path)
    return files


def test_pyproject_lists_every_package_folder() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    modules = [name for name in source_files() if name.endswith(".py")]
    found = {name.rsplit("/", 1)[0].replace("/", ".") for name in modules}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "pyproject.toml lists packages that do not exist"


@pytest.mark.wheel
def test_the_wheel_installs_only_the_mailq_package(wheel: Path) -> None:
    files = wheel_files(wheel)
    top = {name.split("/")[0].removesuffix(".py") for name in files}
    top = {name for name in top if not name.endswith((".dist-info", ".data"))}
    assert top == {"mailq"}
    with ZipFile(wheel) as archive:
        top_level = next(n for n in archive.namelist() if n.endswith(".dist-info/top_level.txt"))
        assert archive.read(top_level).decode().split() == ["mailq"]


@pytest.mark.wheel
def test_the_wheel_holds_every_file_of_the_package(wheel: Path) -> None:
    """The SQL, the default templates, py.typed and the migrations (env.py, script.py.mako,
    versions/) travel with the code."""
    expected = source_files()
    files = wheel_files(wheel)
    assert {"mailq/py.typed", "mailq/migrations/env.py", "mailq/migrations/script.py.mako"} <= files
    assert any(name.startswith("mailq/db/sql/") for name in files)
    assert any(name.startswith("mailq/compose/default_templates/") for name in files)
    assert set(expected) - files == set(), "add these to [tool.setuptools.package-data]"


@pytest.mark.wheel
async def test_the_installed_wheel_migrates_and_sends_an_email(
    venv: Venv, empty_database: str
) -> None:
    outbox = venv.folder / f"outbox-{uuid.uuid4().hex[:8]}"
    env = venv.env(
        database_url=empty_database,
        backend=f"file://{outbox}",
        home=str(venv.folder / "home"),
        **{"from": "noreply@example.com"},
    )
    venv.run(str(venv.mailq), "migrate", env=env)
    with psycopg.connect(empty_database) as conn:
        row = conn.execute("SELECT version_num FROM mailq.alembic_version").fetchone()
    assert row == (HEAD,)

    email = '{"to": "ann@example.com", "subject": "Hello {{ name }}", "text": "Hi!", '
    email += '"context": {"name": "Ann"}}\n'
    assert "queued 1 " in venv.run(str(venv.mailq), "enqueue", "--file", "-", env=env, stdin=email)

    log = venv.folder / "worker.log"
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [venv.python, "-m", "mailq.worker"], env=env, cwd=venv.folder, stdout=out, stderr=out
        )
    try:

        async def sent() -> Path | None:
            assert worker.poll() is None, f"the worker exited:\n{log.read_text()}"
            return next(outbox.glob("*.eml"), None) if outbox.is_dir() else None

        sent_file = await eventually(sent, timeout=60, message="the email in the outbox")
        assert "Subject: Hello Ann" in sent_file.read_text()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=STEP_S) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)


@pytest.mark.wheel
@pytest.mark.parametrize("command", ["uvicorn", "mailq serve", "mailq up"])
def test_the_installed_wheel_serves_http(
    venv: Venv, database_url: str, tmp_path: Path, command: str
) -> None:
    """`uvicorn mailq.service.app:app --workers 2`, `mailq serve --workers 2`, and `mailq up`
    (its supervisor and children from the wheel; the embedded PostgreSQL is tests/acceptance/
    test_up.py's), each stopped as an operator stops it."""
    env = venv.env(database_url=database_url, backend="null://", home=str(tmp_path / "home"))
    port = str(free_port())
    stop = signal.SIGTERM
    if command == "uvicorn":
        (tmp_path / "metrics").mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
        argv = [str(venv.python), "-m", "uvicorn", "mailq.service.app:app", "--workers", "2"]
    elif command == "mailq serve":
        argv = [str(venv.mailq), "serve", "--workers", "2"]
    else:
        argv, stop = [str(venv.mailq), "up"], signal.SIGINT  # Ctrl-C
    with serving([*argv, "--port", port], env, venv.folder, tmp_path / "log", stop) as base_url:
        assert httpx.get(f"{base_url}/healthz", timeout=5).json() == {"status": "ok"}
        ready = httpx.get(f"{base_url}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["schema"] == HEAD


@contextmanager
def serving(
    argv: list[str], env: dict[str, str], cwd: Path, log: Path, stop: signal.Signals
) -> Iterator[str]:
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=out)
    base_url = f"http://127.0.0.1:{argv[-1]}"
    try:
        wait_ready(base_url, process, timeout=STEP_S)
        yield base_url
        process.send_signal(stop)
        assert process.wait(timeout=STEP_S) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
