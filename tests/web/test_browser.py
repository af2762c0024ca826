"""The live pages in a real browser: Debian's chromium (headless) driven by Playwright.

The server is the real aiohttp app on 127.0.0.1 with the real PostgreSQL of the session; the
pipeline's part (a rep's phone starts ringing) is played by :func:`publish_call_event`, the very
hook the pipeline calls. Screenshots of both pages, at 1280x800 and at phone width (390x844),
are written to ``test-artifacts/screenshots/`` (``make screenshots`` copies two of them to
``docs/screenshots/`` for the README). Along the way the pages are checked for WCAG AA text
contrast (``contrast.js``) and for sideways overflow at 1280x800 and at phone width.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dialer.api import create_app, health, leads
from dialer.calls import CallController, CallEventKind
from dialer.config import parse_config
from dialer.pipeline import Pipeline, PipelineSettings, sip_config_for
from dialer.routing import Router
from dialer.sipp import SippPeer, SippProcess
from dialer.store import Store
from dialer.store.pipeline import PipelineStore
from dialer.store.routing import RoutingStore
from dialer.web import (
    CONSOLE_SETTINGS_KEY,
    WEB_HUB_KEY,
    ConsoleSettings,
    LiveCalls,
    console_link,
    publish_call_event,
    web_ctx,
)
from dialer.web import pages as web_pages
from dialer.web.events import LiveEvent
from tests.support.pipeline import prospect_scenario, rep_scenario
from tests.support.sipp import needs_sipp
from tests.web.test_pages import (
    AUTH,
    SECRET,
    TOKEN,
    Clock,
    build_web_app,
    make_config,
    new_lead,
    rep_event,
)

CHROMIUM = Path(os.environ.get("DIALER_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

try:
    from playwright.async_api import Browser, Page, ViewportSize, async_playwright

    HAVE_PLAYWRIGHT = True
except ImportError:  # pragma: no cover - the test extra installs it
    HAVE_PLAYWRIGHT = False

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not HAVE_PLAYWRIGHT, reason="playwright is not installed (pip install -e '.[test]')"
    ),
    pytest.mark.skipif(
        not CHROMIUM.exists() and shutil.which("chromium") is None,
        reason="Debian chromium is not installed (scripts/install-system-deps.sh installs it)",
    ),
]

#: Flags that let chromium run as root in a container with no network beyond loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}


@dataclass
class Site:
    app: web.Application
    server: TestServer
    api: TestClient[web.Request, web.Application]
    store: Store
    clock: Clock

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = str(CHROMIUM) if CHROMIUM.exists() else str(shutil.which("chromium"))
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


async def start_site(store: Store, clock: Clock, port: int = 0) -> Site:
    app = build_web_app(make_config(), store, clock)
    server = TestServer(app, host="127.0.0.1", port=port)
    api = TestClient(server)
    await api.start_server()
    return Site(app=app, server=server, api=api, store=store, clock=clock)


@pytest.fixture
async def site(store: Store) -> AsyncIterator[Site]:
    started = await start_site(store, Clock())
    try:
        yield started
    finally:
        await started.api.close()


async def open_console(
    browser: Browser, site: Site, rep: str, viewport: ViewportSize = DESKTOP
) -> Page:
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    await page.goto(console_link(SECRET, rep, site.url("/")))
    await page.wait_for_url("**/console")
    await page.wait_for_selector("#conn[data-state=live]", timeout=5000)
    return page


async def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / name), full_page=False)


#: WCAG contrast of every visible text, measured in the page (see the script's header).
CONTRAST_JS = (Path(__file__).parent / "contrast.js").read_text(encoding="utf-8")


async def assert_readable(page: Page, *must_cover: str) -> None:
    """Every visible text on ``page`` meets WCAG AA (4.5:1; 3:1 for large text). Each of
    ``must_cover`` (CSS selectors) must be on the page, so the states meant to be measured
    (a row of each SLA colour, a saved card...) really were."""
    for selector in must_cover:
        assert await page.locator(selector).count() > 0, f"nothing to measure at {selector}"
    results = await page.evaluate(CONTRAST_JS)
    assert results, "no text measured"
    failing = [item for item in results if item["ratio"] < item["need"]]
    assert failing == [], failing


async def assert_no_horizontal_overflow(page: Page) -> None:
    """The page never scrolls sideways, and no table is wider than its wrapper."""
    sizes = await page.evaluate(
        """() => ({
          page: [document.documentElement.scrollWidth, window.innerWidth],
          tables: Array.from(document.querySelectorAll("table")).map((t) => {
            const wrap = t.closest(".table-wrap") || t.parentElement;
            return [t.id, wrap.scrollWidth, wrap.clientWidth];
          }),
        })"""
    )
    scroll_width, inner_width = sizes["page"]
    assert scroll_width <= inner_width, sizes
    overflowing = [table for table in sizes["tables"] if table[1] > table[2]]
    assert overflowing == [], overflowing


async def test_ringing_pops_the_card_in_that_reps_console_only(
    browser: Browser, site: Site
) -> None:
    alice = await open_console(browser, site, "alice")
    bob = await open_console(browser, site, "bob")
    lead = await new_lead(
        site.store,
        name="Jordan Rivera",
        company="Northwind Traders",
        external_id="crm-778",
        fields={"plan": "enterprise", "seats": 40},
    )
    await site.store.append_event(lead.id, "rep_ringing", {"rep_id": "alice"})
    publish_call_event(site.app, lead, rep_event(CallEventKind.REP_RINGING, "alice", status=180))
    card = alice.locator(f'article.card[data-lead-id="{lead.id}"]')
    await card.wait_for(state="visible", timeout=1000)  # the acceptance bound: within 1 s
    assert await card.locator('[data-slot="name"]').text_content() == "Jordan Rivera"
    assert await card.locator('[data-slot="phone"]').text_content() == lead.phone
    crm = card.locator('[data-slot="crm"] a')
    assert await crm.get_attribute("href") == "https://crm.example/crm-778"  # [api] crm_url
    await assert_readable(alice, "article.card .state", "button.decline", '[data-slot="crm"] a')
    # Bob's console got nothing: no card, and the lead's name is nowhere on his page.
    await asyncio.sleep(0.3)
    assert await bob.locator("article.card").count() == 0
    assert "Jordan Rivera" not in await bob.content()
    await shoot(alice, "console-1280x800.png")
    await alice.set_viewport_size(PHONE)
    await assert_no_horizontal_overflow(alice)
    await assert_readable(alice, "article.card")
    await shoot(alice, "console-390x844.png")
    # The decline button is keyboard-operable.
    await card.locator('[data-action="decline"]').focus()
    await alice.keyboard.press("Enter")
    await card.wait_for(state="detached", timeout=2000)


async def test_disposition_saved_in_the_console_shows_on_the_lead_over_the_api(
    browser: Browser, site: Site
) -> None:
    alice = await open_console(browser, site, "alice")
    lead = await new_lead(site.store, name="Sam Lee")
    await site.store.append_event(lead.id, "rep_answered", {"rep_id": "alice"})
    publish_call_event(site.app, lead, rep_event(CallEventKind.REP_ANSWERED, "alice", status=200))
    card = alice.locator(f'article.card[data-lead-id="{lead.id}"]')
    await card.wait_for(state="visible", timeout=2000)
    await card.get_by_label("Qualified").check()
    await card.get_by_label("Notes").fill("Demo on Friday")
    await assert_readable(alice, '[data-slot="disposition"] button[type="submit"]', "textarea")
    await card.get_by_role("button", name="Save disposition").click()
    await card.locator('[data-slot="saved"]', has_text="Saved.").wait_for(timeout=2000)
    # The saved card stays a few seconds, greyed out but still readable.
    await assert_readable(alice, "article.card.done")
    response = await site.api.get(f"/v1/leads/{lead.id}/disposition", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert (body["disposition"], body["notes"], body["rep_id"]) == (
        "qualified",
        "Demo on Friday",
        "alice",
    )
    detail = await (await site.api.get(f"/v1/leads/{lead.id}", headers=AUTH)).json()
    assert detail["timeline"][-1]["kind"] == "disposition"


async def seed_history(store: Store, now: datetime) -> None:
    """Called leads over the past week, so the trend charts have something to draw."""
    for day in range(8):
        for index in range(3):
            received = now - timedelta(days=day, minutes=10 * index)
            lead = await new_lead(
                store, phone=f"+1555020{day}{index}00", received_at=received, name=f"Past {day}"
            )
            ttc = timedelta(seconds=20 + 15 * day + 40 * index + (200 if index == 2 else 0))
            await store.pool.execute(
                "UPDATE leads SET status = 'completed', called_at = $2, sla_due_at = $3, "
                "assigned_rep = $4 WHERE id = $1::uuid",
                lead.id,
                received + ttc,
                received + timedelta(seconds=300 if day % 3 else 60),
                "alice" if index % 2 else "bob",
            )


async def test_dashboard_row_turns_yellow_when_its_sla_is_at_risk(
    browser: Browser, site: Site
) -> None:
    start = datetime.now(UTC)
    await seed_history(site.store, start)
    site.clock.now = start + timedelta(seconds=5)  # high intent: 300 s, at risk from 150 s
    lead = await new_lead(site.store, name="Alex Kim", received_at=start)
    await new_lead(site.store, name="Robin Diaz", phone="+15550104444", received_at=start)
    # One row of each colour, so contrast is measured on all three (and the screenshot shows them).
    await new_lead(
        site.store,
        name="Taylor Soon",
        phone="+15550105555",
        received_at=start - timedelta(seconds=200),
    )
    await new_lead(
        site.store,
        name="Morgan Late",
        company="Globex",
        phone="+15550106666",
        received_at=start - timedelta(minutes=10),
    )
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await page.goto(site.url(f"/dashboard?token={TOKEN}"))
    await page.wait_for_url("**/dashboard")
    assert TOKEN not in page.url and TOKEN not in await page.content()
    row = page.locator(f'#queue tr[data-lead-id="{lead.id}"]')
    await row.wait_for(timeout=5000)
    await page.wait_for_selector(f'#queue tr[data-lead-id="{lead.id}"].sla-green', timeout=3000)
    await page.wait_for_selector("#conn[data-state=live]", timeout=5000)
    await page.locator("#reps tbody tr").first.wait_for(timeout=3000)
    # 1280x800: every table fits its panel (no sideways scrolling of the rep board).
    await assert_no_horizontal_overflow(page)
    await assert_readable(
        page,
        "#queue tr.sla-green .sla-label",
        "#queue tr.sla-yellow .sla-label",
        "#queue tr.sla-red .sla-label",
        "#queue button.link",
        "#reps td",
        "#reps th",
        '.range button[aria-pressed="true"]',
        '.range button[aria-pressed="false"]',
    )
    await shoot(page, "dashboard-1280x800.png")
    # The server's clock moves into the at-risk part of the window; a live event makes the
    # page fetch again, and the row changes colour.
    site.clock.now = start + timedelta(seconds=200)
    site.app[WEB_HUB_KEY].publish(LiveEvent(kind="lead", lead_id=lead.id))
    await page.wait_for_selector(f'#queue tr[data-lead-id="{lead.id}"].sla-yellow', timeout=3000)
    assert await row.locator(".sla-label").text_content() == "At risk"
    # Drill-down opens from the keyboard.
    await row.get_by_role("button").focus()
    await page.keyboard.press("Enter")
    await page.locator("#drill[open] .timeline li").first.wait_for(timeout=3000)
    await assert_readable(page, "#drill[open] .timeline li")
    await page.keyboard.press("Escape")
    await page.set_viewport_size(PHONE)
    await assert_no_horizontal_overflow(page)
    await assert_readable(page, "#queue tr.sla-red td")
    await shoot(page, "dashboard-390x844.png")


async def test_console_reconnects_after_a_daemon_restart_without_reloading(
    browser: Browser, store: Store
) -> None:
    first = await start_site(store, Clock())
    port = first.server.port
    assert port is not None
    alice = await open_console(browser, first, "alice")
    await alice.evaluate("window.__sameDocument = true")
    await first.api.close()  # the daemon stops: its streams end, the port closes
    await alice.wait_for_selector("#conn[data-state=down]", timeout=5000)
    second = await start_site(store, Clock(), port=port)
    try:
        await alice.wait_for_selector("#conn[data-state=live]", timeout=10000)
        lead = await new_lead(store, name="After Restart")
        publish_call_event(
            second.app, lead, rep_event(CallEventKind.REP_RINGING, "alice", status=180)
        )
        await alice.locator(f'article.card[data-lead-id="{lead.id}"]').wait_for(timeout=1000)
        assert await alice.evaluate("window.__sameDocument") is True
    finally:
        await second.api.close()


@needs_sipp
async def test_a_posted_lead_pops_in_the_ringing_reps_console_end_to_end(
    browser: Browser, database_url: str, store: Store, tmp_path: Path
) -> None:
    """The real pipeline and call layer, a SIPp phone for alice and a SIPp prospect behind the
    trunk: a lead posted over HTTP rings alice, whose card pops within 1 s (bob, not in the
    rule's pool, sees nothing); she answers, the call ends, she saves a disposition."""
    async with contextlib.AsyncExitStack() as stack:
        alice_phone = await stack.enter_async_context(
            SippProcess(
                SippPeer(
                    scenario=rep_scenario(tmp_path / "alice.xml", answer_ms=1500),
                    calls=None,
                    timeout_s=60,
                )
            )
        )
        trunk = await stack.enter_async_context(
            SippProcess(
                SippPeer(
                    scenario=prospect_scenario(
                        tmp_path / "prospect.xml", answer_ms=100, hangup_ms=300
                    ),
                    calls=None,
                    timeout_s=60,
                )
            )
        )
        config = parse_config(
            {
                "api": {"tokens": [TOKEN]},
                "trunks": [
                    {
                        "name": "sipp",
                        "proxy": f"sip:127.0.0.1:{trunk.local_port}",
                        "options_interval_s": 0,
                    }
                ],
                "reps": [
                    {
                        "id": "alice",
                        "name": "Alice",
                        "sip_uri": f"sip:alice@127.0.0.1:{alice_phone.local_port}",
                    },
                    {"id": "bob", "name": "Bob", "sip_uri": "sip:bob@127.0.0.1:9"},
                ],
                "routing": {"rules": [{"name": "alice", "pool": {"reps": ["alice"]}}]},
                "ringing": {"ring_timeout_s": 10, "wrap_up_s": 0},
                "compliance": {"calling_hours": "00:00-24:00"},
            },
            env={},
        )
        app = create_app(config, store, route_modules=(health, leads, web_pages))
        app[CONSOLE_SETTINGS_KEY] = ConsoleSettings(secret=SECRET, retry_ms=500)
        app.cleanup_ctx.append(web_ctx)
        controller = CallController(trunks=config.trunks, sip_config=sip_config_for(config))
        await controller.start()
        stack.push_async_callback(controller.close)
        routing = RoutingStore(store.pool)
        await routing.sync_reps(config.reps)
        instance = "web-e2e"
        pipeline = Pipeline(
            config=config,
            store=PipelineStore(store.pool, instance, lease_s=5),
            routing_store=routing,
            router=Router(config),
            calls=LiveCalls(app, controller),  # the wiring line of dialer/pipeline.py
            settings=PipelineSettings(
                instance_id=instance, lease_s=5, poll_interval_s=0.1, drain_timeout_s=5
            ),
            listen_dsn=database_url,
        )
        server = TestServer(app, host="127.0.0.1", port=0)
        api = TestClient(server)
        await api.start_server()
        stack.push_async_callback(api.close)
        await pipeline.start()
        stack.push_async_callback(pipeline.stop)
        site = Site(app=app, server=server, api=api, store=store, clock=Clock())

        alice = await open_console(browser, site, "alice")
        bob = await open_console(browser, site, "bob")
        # The functional acceptance ("posting a lead pops its card within 1 s") is a
        # wall-clock bound on purpose, measured from before the POST: the 202's own time
        # counts against the second, so the wait gets only what is left of it.
        posted_at = time.monotonic()
        response = await api.post(
            "/v1/leads",
            json={"phone": "+1 415 555 0134", "name": "Casey Posted", "intent": "high"},
            headers=AUTH,
        )
        assert response.status == 202, await response.text()
        lead_id = (await response.json())["id"]
        card = alice.locator(f'article.card[data-lead-id="{lead_id}"]')
        left_ms = max(0.0, 1000.0 - (time.monotonic() - posted_at) * 1000.0)
        # Playwright reads timeout=0 as "no limit": a spent second still gets a 1 ms look.
        await card.wait_for(state="visible", timeout=max(left_ms, 1.0))
        assert await card.locator('[data-slot="name"]').text_content() == "Casey Posted"
        assert await card.locator('[data-slot="attempts"]').text_content() == "0"
        # Alice answers after 1.5 s; the prospect answers and hangs up: disposition time.
        form = card.locator('[data-slot="disposition"]')
        await form.wait_for(state="visible", timeout=10000)
        await card.locator('[data-slot="state"]', has_text="Call ended").wait_for(timeout=10000)
        await card.get_by_label("Callback").check()
        await card.get_by_role("button", name="Save disposition").click()
        await card.locator('[data-slot="saved"]', has_text="Saved.").wait_for(timeout=3000)
        saved = await (await api.get(f"/v1/leads/{lead_id}/disposition", headers=AUTH)).json()
        assert saved["disposition"] == "callback" and saved["rep_id"] == "alice"
        assert await bob.locator("article.card").count() == 0
        assert "Casey Posted" not in await bob.content()
