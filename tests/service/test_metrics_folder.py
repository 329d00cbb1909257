"""The /metrics multiprocess folder (issue 11, case 6): private, under MAILQ_HOME, shared by
the processes of one service (keyed by their parent), and cleaned of dead parents' folders."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mailq.service.metrics import UnsafeMetricsFolder, multiprocess_dir


def test_the_folder_is_private_under_mailq_home(tmp_path: Path) -> None:
    folder = multiprocess_dir({}, tmp_path)
    assert folder == tmp_path / "metrics" / str(os.getppid())
    for path in (folder, folder.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert multiprocess_dir({}, tmp_path) == folder  # the service's other processes


def test_a_folder_others_may_write_or_own_is_refused(tmp_path: Path) -> None:
    (tmp_path / "metrics").mkdir(mode=0o700)
    planted = tmp_path / "metrics" / str(os.getppid())
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    (planted / "counter_1.db").write_bytes(b"planted")
    with pytest.raises(UnsafeMetricsFolder, match="others may use it"):
        multiprocess_dir({}, tmp_path)
    if os.getuid() != 0:
        return
    planted.chmod(0o700)
    os.chown(planted, 65534, 65534)
    with pytest.raises(UnsafeMetricsFolder, match="owned by uid 65534"):
        multiprocess_dir({}, tmp_path)


def test_the_folders_of_dead_parents_are_removed(tmp_path: Path) -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = tmp_path / "metrics" / ended.stdout.strip()
    dead.parent.mkdir(mode=0o700)
    dead.mkdir(mode=0o700)
    (dead / "counter_1.db").write_bytes(b"old")
    alive = tmp_path / "metrics" / "1"  # init never ends
    alive.mkdir(mode=0o700)
    multiprocess_dir({}, tmp_path)
    assert not dead.exists() and alive.exists()
