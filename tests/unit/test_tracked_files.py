"""No generated secret is committed: the unsubscribe-signing key and the tokens that mailq
writes into MAILQ_HOME, or anything else under a .local/ (the default MAILQ_HOME's parent)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[2]
# The names mailq generates in MAILQ_HOME (mailq.compose.unsubscribe.SECRET_FILE, the tokens
# file of `mailq up` and the service), and .env, where docker-compose.yml reads real tokens.
SECRET_NAMES = {"secret_key", "tokens", ".env"}


def tracked_files() -> list[PurePosixPath]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [PurePosixPath(p) for p in listed.stdout.decode().split("\0") if p]


def test_no_generated_secret_is_tracked() -> None:
    files = tracked_files()
    assert files, "git lists no files"
    secrets = [str(p) for p in files if p.name in SECRET_NAMES or ".local" in p.parts]
    assert secrets == [], "generated secrets are tracked: `git rm --cached` them"


def test_generated_files_are_ignored() -> None:
    tracked_files()  # skips outside a checkout
    probes = [".local/share/mailq/secret_key", ".local/share/mailq/tokens", ".env", "build/x"]
    probes += ["dist/mailq-0.1.0-py3-none-any.whl", "mailq.egg-info/PKG-INFO"]
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=REPO,
        input="\n".join(probes) + "\n",
        capture_output=True,
        text=True,
    )
    assert sorted(checked.stdout.split()) == sorted(probes)
