"""The dashboard in a real browser (Debian's Chromium through Playwright) against a real
uvicorn service: signing in with each token, the viewer's disabled actions, live counts,
pausing a kind, the breaker and the bounce and complaint rates, the sandboxed preview of a
hostile email, and a screenshot of every page at 1280 px and 390 px (test-artifacts/dashboard/)."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from mailq.service.dashboard.deliverability import percent as rate
from tests.dashboard.conftest import (
    ADMIN,
    CLIENT,
    VIEWER,
    Dashboard,
    run_async,
    screenshot,
    sign_in,
)

PAGES = (
    ("overview", "/dashboard"),
    ("emails", "/dashboard/emails"),
    ("email", "/dashboard/emails/{email}"),
    ("failures", "/dashboard/failures"),
    ("campaigns", "/dashboard/campaigns"),
    ("campaign", "/dashboard/campaigns/{campaign}"),
    ("kinds", "/dashboard/kinds"),
    ("workers", "/dashboard/workers"),
    ("suppressions", "/dashboard/suppressions"),
    ("unknown", "/dashboard/unknown"),
)
HOSTILE_HTML = (
    "<h1>Hello</h1>"
    "<script>window.parent.__emailRan = 1; console.log('EMAIL SCRIPT RAN');</script>"
    "<img src=x onerror=\"window.parent.__emailRan = 2; console.log('EMAIL ONERROR RAN')\">"
    '<img src="https://tracker.example.net/pixel.gif" alt="pixel">'
    '<p style="color: teal">styled text</p>'
)


def fetch(url: str, query: str, *args: Any) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return run_async(run)


def enqueue(dashboard: Dashboard, **body: Any) -> int:
    payload = {"to": "ann@example.com", "subject": "Hi", "text": "Hello", **body}
    response = httpx.post(
        f"{dashboard.url}/v1/emails", json=payload, headers={"Authorization": f"Bearer {CLIENT}"}
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_admin_and_viewer_sign_in_and_every_page_is_captured(
    dashboard: Dashboard, browser: Any
) -> None:
    failed = fetch(
        dashboard.database_url,
        "SELECT id FROM mailq.emails WHERE status = 'failed' AND to_address LIKE '%@gmail.com' "
        "ORDER BY id LIMIT 1",
    )
    values = {"email": failed[0]["id"], "campaign": dashboard.seeded["campaign"]}
    for token, role in ((ADMIN, "admin"), (VIEWER, "viewer")):
        page = sign_in(browser, dashboard, token)
        assert page.locator(".badge").inner_text().strip().lower() == role
        for name, path in PAGES:
            page.goto(dashboard.url + path.format(**values))
            assert page.locator("h1").first.is_visible(), name
            if role == "admin":
                screenshot(page, f"{name}-1280")
            else:
                enabled = page.locator(
                    "main button:not([disabled]), main input[type=checkbox]:not([disabled])"
                )
                # Search forms stay usable; nothing that changes anything does.
                actions = [
                    enabled.nth(i).inner_text()
                    for i in range(enabled.count())
                    if enabled.nth(i).get_attribute("type") != "submit"
                    or enabled.nth(i).inner_text().strip() not in {"Search", "Find"}
                ]
                assert actions == [], f"{name}: enabled for a viewer: {actions}"
        page.context.close()
    phone = sign_in(browser, dashboard, ADMIN, width=390)
    for name, path in PAGES:
        phone.goto(dashboard.url + path.format(**values))
        screenshot(phone, f"{name}-390")
    phone.context.close()


def test_the_overview_counts_equal_queue_stats_and_follow_an_enqueue_live(
    dashboard: Dashboard, browser: Any
) -> None:
    page = sign_in(browser, dashboard, ADMIN)
    stats = fetch(dashboard.database_url, "SELECT kind, state, count FROM mailq.queue_stats")
    assert stats
    for row in stats:
        cell = page.locator(f'[data-count="{row["kind"]}:{row["state"]}"]')
        assert int(cell.inner_text().replace(",", "")) == row["count"], dict(row)
    queued = page.locator('[data-count="welcome:queued"]')
    before = int(queued.inner_text().replace(",", ""))
    page.wait_for_selector('[data-live-status][data-state="live"]', timeout=5000)
    started = time.monotonic()
    enqueue(dashboard, to="live@example.com")
    page.wait_for_function(
        "n => document.querySelector('[data-count=\"welcome:queued\"]').textContent"
        ".replace(/,/g, '') == n",
        arg=str(before + 1),
        timeout=2000,
    )
    assert time.monotonic() - started < 2.0
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1, "reloaded"
    page.context.close()


def test_pausing_a_kind_from_the_page_pauses_it(dashboard: Dashboard, browser: Any) -> None:
    page = sign_in(browser, dashboard, ADMIN)
    page.goto(f"{dashboard.url}/dashboard/kinds")
    page.get_by_role("button", name="Pause welcome").click()
    page.wait_for_selector("text=Kind welcome is paused.")
    paused = fetch(dashboard.database_url, "SELECT kind, paused_by FROM mailq.paused_kinds")
    assert {r["kind"] for r in paused} == {"welcome", "portfolio_builder"}
    audit = fetch(dashboard.database_url, "SELECT actor, action, target FROM mailq.audit_log")
    assert [(r["action"], r["target"]) for r in audit] == [("kind.pause", "welcome")]
    assert audit[0]["actor"].startswith("admin ")
    assert page.locator(".audit").inner_text().count("kind.pause") == 1, "shown on its page"
    page.get_by_role("button", name="Resume welcome").click()
    page.wait_for_selector("text=Kind welcome is running.")
    paused = fetch(dashboard.database_url, "SELECT kind FROM mailq.paused_kinds")
    assert {r["kind"] for r in paused} == {"portfolio_builder"}
    page.context.close()


def test_an_emails_script_never_runs_and_nothing_remote_loads(
    dashboard: Dashboard, browser: Any
) -> None:
    email_id = enqueue(dashboard, html=HOSTILE_HTML)
    page = sign_in(browser, dashboard, ADMIN)
    console: list[str] = []
    requests: list[str] = []
    remote: list[str] = []

    def refuse(route: Any) -> None:
        # Never let a test browser reach past loopback: record the attempt, abort it.
        remote.append(route.request.url)
        route.abort()

    page.context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), refuse)
    page.on("console", lambda message: console.append(message.text))
    # Chromium reports a request that CSP blocked as started and failed; those that reached the
    # network (past the route above) finish.
    page.context.on("requestfinished", lambda request: requests.append(request.url))
    page.goto(f"{dashboard.url}/dashboard/emails/{email_id}")
    frame = page.frame_locator("iframe.preview")
    assert frame.locator("h1").inner_text() == "Hello"
    assert frame.locator("p").inner_text() == "styled text"
    page.wait_for_load_state("networkidle")
    assert page.evaluate("window.__emailRan") is None
    assert not [m for m in console if "RAN" in m], console
    assert [m for m in console if "Content Security Policy" in m], "the policy blocked nothing?"
    hosts = {urlsplit(u).hostname for u in requests if not u.startswith(("data:", "about:"))}
    assert hosts == {"127.0.0.1"}, requests
    assert remote == []
    # Asking for remote images lets the browser try the image (aborted here), still no script.
    page.get_by_role("link", name="Load remote images").click()
    page.wait_for_url(re.compile(r"images=1"))
    page.frame_locator("iframe.preview").locator("h1").wait_for()
    page.wait_for_load_state("networkidle")
    assert remote == ["https://tracker.example.net/pixel.gif"]
    assert page.evaluate("window.__emailRan") is None
    assert not [m for m in console if "RAN" in m], console
    page.context.close()


def test_the_breaker_and_the_rates_are_what_the_database_says(
    dashboard: Dashboard, browser: Any
) -> None:
    page = sign_in(browser, dashboard, ADMIN)
    breakers = fetch(dashboard.database_url, "SELECT * FROM mailq.backend_breakers")
    assert breakers
    for b in breakers:
        row = page.locator(f'[data-breaker="{b["backend"]}"]')
        assert row.locator('[data-breaker-field="state"]').inner_text() == b["state"]
        assert row.locator('[data-breaker-field="deferred"]').inner_text() == str(b["deferred"])
        assert row.locator('[data-breaker-field="probes"]').inner_text() == str(b["probes"])
    assert page.locator("[data-breaker-summary]").get_attribute("data-breaker-summary") == "open"
    # The kinds' rates against mailq.bounces (the bounce work's own view of the same counts).
    kinds = fetch(dashboard.database_url, "SELECT * FROM mailq.bounces WHERE scope = 'kind'")
    assert sum(r["complained"] for r in kinds) > 0 and sum(r["hard_bounced"] for r in kinds) > 0
    for r in kinds:
        _assert_rates(page.locator(f'[data-rates="{r["kind"]}"]'), r)
    page.goto(f"{dashboard.url}/dashboard/campaigns/{dashboard.seeded['campaign']}")
    (campaign,) = fetch(
        dashboard.database_url,
        "SELECT * FROM mailq.bounces WHERE scope = 'campaign' AND campaign_id = $1",
        dashboard.seeded["campaign"],
    )
    assert campaign["sent"] > 0 and campaign["complained"] > 0
    _assert_rates(page.locator("[data-rates]"), campaign)
    page.context.close()


def _assert_rates(row: Any, expected: Any) -> None:
    def shown(name: str) -> str:
        return str(row.locator(f'[data-rate-field="{name}"]').inner_text())

    for name in ("sent", "delivered", "hard_bounced", "soft_bounced", "rejected", "complained"):
        assert int(shown(name).replace(",", "")) == expected[name], (name, dict(expected))
    assert shown("bounce_rate") == rate(expected["hard_bounce_rate"])
    assert shown("complaint_rate") == rate(expected["complaint_rate"])
