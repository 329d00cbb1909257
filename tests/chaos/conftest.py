"""Fixtures of the chaos scenarios: a recording relay, a private PostgreSQL cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.private_postgres import PrivatePostgres, private_postgres
from tests.support.relay import RecordingRelay

# Each DATA is answered after this long: sends stay in flight long enough for a fault to
# catch them there, and a few thousand emails take some seconds to drain.
RELAY_DELAY_S = 0.05


@pytest.fixture
def relay() -> Iterator[RecordingRelay]:
    with RecordingRelay(delay_s=RELAY_DELAY_S) as server:
        yield server


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A private cluster with a migrated `mailq` database, for outages of the server itself."""
    with private_postgres() as cluster:
        cluster.create_database("mailq")
        cluster.migrate("mailq")
        yield cluster


@pytest.fixture
def workers_log(tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "workers.log"
    yield log
