"""Shared test values of tests/bounces: the VERP codec of the sample messages, data files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mailq.bounces.verp import Verp

DATA = Path(__file__).parent / "data"
TEST_KEY = "test-key-1"
BOUNCE_DOMAIN = "bounces.example.com"


def sample(name: str) -> bytes:
    return (DATA / "dsn" / name).read_bytes()


def payload(name: str) -> Any:
    return json.loads((DATA / "webhooks" / name).read_text())


@pytest.fixture
def verp() -> Verp:
    return Verp.from_secret(BOUNCE_DOMAIN, TEST_KEY)
