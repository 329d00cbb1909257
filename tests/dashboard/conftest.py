"""The dashboard's browser tests: a real `uvicorn service.app:app` on a fresh database and
Debian's Chromium driven by Playwright (never a browser Playwright downloads itself)."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.dashboard.seed import seed
from tests.support import postgres
from tests.support.processes import REPO
from tests.support.service import service_env, uvicorn

CHROMIUM = Path("/usr/bin/chromium")
# The screenshots of every page, for a person to look at (README "Dashboard"); CI keeps them.
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
CLIENT = "mqc_dashboard-test-client"
ADMIN = "mqa_dashboard-test-admin"
VIEWER = "mqv_dashboard-test-viewer"
SECRET = "dashboard-test-secret-key"


T = TypeVar("T")


def run_async(work: Any) -> Any:
    """Run a coroutine function to the end from a sync test: in a thread of its own, since
    Playwright's sync API keeps an event loop running in the test's thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(work())).result()


@dataclass(frozen=True)
class Dashboard:
    url: str
    database_url: str
    seeded: dict[str, int]


@pytest.fixture(scope="module")
def dashboard(
    pg_admin_url: str, template_name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dashboard]:
    """One seeded service for a module's browser tests (starting one is the slow part)."""
    name = f"mailq_t_{uuid.uuid4().hex[:16]}"
    database_url = postgres.create_database(pg_admin_url, name, template=template_name)
    tmp_path = tmp_path_factory.mktemp("dashboard")
    try:
        yield from _serve(database_url, tmp_path)
    finally:
        postgres.drop_database(pg_admin_url, name)


def _serve(database_url: str, tmp_path: Path) -> Iterator[Dashboard]:
    seeded = run_async(lambda: seed(database_url))
    env = service_env(
        database_url,
        "null://",
        tmp_path / "home",
        api_token=CLIENT,
        admin_token=ADMIN,
        viewer_token=VIEWER,
        secret_key=SECRET,
        embedded_worker="0",
    )
    with uvicorn(env, 1, tmp_path / "service.log") as (base_url, _process):
        yield Dashboard(base_url, database_url, seeded)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module-scoped: Playwright's sync API keeps an event loop running in this thread while
    # it is open, which the async tests of later modules could not share.
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's Chromium is not installed (.ci/run installs it: apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield launched
        finally:
            launched.close()


def sign_in(browser: Any, dashboard: Dashboard, token: str, width: int = 1280) -> Any:
    """A new browser context (its own cookies) signed in with `token`; returns its page."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(f"{dashboard.url}/dashboard")
    assert re.search(r"/dashboard/login", page.url), page.url
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{dashboard.url}/dashboard")
    return page


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
