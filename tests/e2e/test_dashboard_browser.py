"""The live dashboard in a real browser: an alert to a few thousand Telegram chats, watched as it goes out.

Playwright drives Debian's Chromium (``/usr/bin/chromium``). The daemon runs in-process
on a free port against the Telegram Bot API stand-in (its rate lifted to 400 msg/s so
that 3,000 chats take seconds, not the real 100 s) and a real PostgreSQL. A viewer opens
the dashboard *before* the alert exists; the alert's row then appears and its numbers
climb without a reload (the page never navigates again: the Server-Sent Events stream
and ``/static/dashboard.js`` under the page's CSP), and end at the totals the database
holds. The test then opens the alert's timeline chart. Screenshots (desktop mid-way and
at the end, phone at 390 px with no sideways scrolling, the timeline) go to
``tests/e2e/screenshots/``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dispatcher.app import Service
from dispatcher.settings import load
from dispatcher.standins.smtp import SmtpStandIn
from dispatcher.standins.telegram_api import TelegramStandIn
from tests.e2e.test_console_browser import ARGS, CHROMIUM, DESKTOP, PHONE, log_in, shot
from tests.integration.test_console import CONFIG, SECRET, Stack
from tests.samples import add_subscribers, make_alert
from tests.staffing import create_staff

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")

RECIPIENTS = 3000


@pytest.fixture
async def stack(database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    telegram, smtp = TelegramStandIn(), SmtpStandIn()
    await telegram.start()
    await smtp.start()
    cfg = tmp_path / "dispatcher.toml"
    text = CONFIG.format(state=tmp_path, telegram=telegram.base_url, smtp_host=smtp.host, smtp_port=smtp.port,
                         public_url="http://127.0.0.1:8080")  # fmt: skip
    cfg.write_text(text.replace("[channels.email]", "rate_per_second = 400\n[channels.email]"))
    await add_subscribers(database, "telegram", [str(500000 + i) for i in range(RECIPIENTS)])
    service = Service(load(cfg, env={"CONSOLE_SECRET": SECRET, "CONSOLE_TOKEN": "42:TEST"}), dsn=database)
    await service.start()
    s = Stack(database, service, telegram, smtp)
    try:
        yield s
    finally:
        await service.stop()
        await telegram.stop()
        await smtp.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield b
        finally:
            await b.close()


def number(text: str) -> int:
    return int(text.replace(",", "").strip() or 0)


async def test_a_viewer_watches_three_thousand_deliveries_go_out_live_and_opens_the_timeline(
    stack: Stack, browser: Any
) -> None:
    base = stack.base
    await create_staff(stack.dsn, "watch-room", "viewer")
    ctx = await browser.new_context(viewport=DESKTOP, locale="ja-JP")
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await log_in(page, base, "watch-room")
    await page.goto(f"{base}/")
    await expect(page.locator("body")).to_have_attribute("data-live", "on")
    navigations: list[str] = []
    page.on("framenavigated", lambda f: navigations.append(f.url) if f == page.main_frame else None)

    assert stack.service.pipeline is not None
    issued = datetime.now(UTC) - timedelta(seconds=40)
    await stack.service.pipeline.ingest(make_alert("dash-e2e", headline="沼津市に大雨警報", sent=issued))
    conn = await asyncpg.connect(stack.dsn)
    try:
        alert_id = int(await conn.fetchval("SELECT id FROM alerts WHERE identifier = 'dash-e2e'"))
        chan = page.locator(f'tr[data-alert="{alert_id}"] div.chan[data-channel="telegram"]')
        delivered = chan.locator('.chead [data-k="delivered"]')
        total = chan.locator('.chead [data-k="total"]')
        await expect(chan).to_be_visible(timeout=10_000)  # the row appeared, drawn by the script
        seen: list[int] = []
        mid_shot = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            d, t = number(await delivered.inner_text()), number(await total.inner_text())
            if not seen or seen[-1] != d:
                seen.append(d)
            if not mid_shot and t and 0.2 * t < d < 0.8 * t:
                await shot(page, "dashboard-1-live-desktop")
                mid_shot = True
            pending = await conn.fetchval(
                "SELECT count(*) FROM deliveries WHERE alert_id = $1 AND state IN ('queued', 'sending')", alert_id
            )
            if t and d == t and pending == 0:
                break
            await asyncio.sleep(0.1)
        held = {
            r["state"]: int(r["n"])
            for r in await conn.fetch(
                "SELECT state::text AS state, count(*) AS n FROM deliveries WHERE alert_id = $1 GROUP BY 1", alert_id
            )
        }
    finally:
        await conn.close()
    print(f"\ndelivered as the browser saw it, {len(seen)} distinct values: {seen[:8]} … {seen[-3:]}")
    print(f"database: {held}; navigations after load: {navigations}")
    assert held == {"delivered": RECIPIENTS}
    await expect(delivered).to_have_text(f"{RECIPIENTS:,}")
    await expect(total).to_have_text(f"{RECIPIENTS:,}")
    await expect(chan.locator('.legend [data-n="queued"]')).to_have_text("0 queued")
    await expect(chan.locator('[data-k="eta"]')).to_have_text("done")
    assert len(seen) >= 4 and seen == sorted(seen), f"the numbers climb in place: {seen}"
    assert seen[0] < RECIPIENTS
    assert navigations == [], "no reload"
    assert mid_shot, "a screenshot while it was going out"
    await shot(page, "dashboard-2-done-desktop")
    assert not errors, errors

    # On a phone: the same page, nothing wider than the screen.
    phone = await browser.new_context(viewport=PHONE, locale="ja-JP", is_mobile=True, has_touch=True)
    pp = await phone.new_page()
    await log_in(pp, base, "watch-room")
    await pp.goto(f"{base}/")
    await expect(pp.locator("body")).to_have_attribute("data-live", "on")
    for selector in ("table#live", "table#health", "main", f'tr[data-alert="{alert_id}"]'):
        box = await pp.locator(selector).first.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, (selector, box)
    await shot(pp, "dashboard-3-phone")
    await phone.close()

    # The timeline, from the row's link.
    await page.click(f'tr[data-alert="{alert_id}"] a[href="/alerts/{alert_id}/timeline"]')
    await page.wait_for_selector("svg.timeline")
    body = await page.inner_text("main")
    assert "telegram: last delivery (3,000/3,000)" in body
    await expect(page.locator("svg.timeline-wide circle.delivery")).to_have_count(2)
    await shot(page, "dashboard-4-timeline-desktop")
    phone = await browser.new_context(viewport=PHONE, locale="ja-JP", is_mobile=True, has_touch=True)
    pp = await phone.new_page()
    await log_in(pp, base, "watch-room")
    await pp.goto(f"{base}/alerts/{alert_id}/timeline")
    await expect(pp.locator("svg.timeline-narrow")).to_be_visible()
    await expect(pp.locator("svg.timeline-wide")).to_be_hidden()
    await shot(pp, "dashboard-5-timeline-phone")
    await phone.close()
    assert not errors, errors
    await ctx.close()


@pytest.fixture
async def slow_stack(database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """Telegram at its real 30 msg/s, 10,000 chats: the estimate runs to minutes."""
    telegram, smtp = TelegramStandIn(), SmtpStandIn()
    await telegram.start()
    await smtp.start()
    cfg = tmp_path / "dispatcher.toml"
    cfg.write_text(CONFIG.format(state=tmp_path, telegram=telegram.base_url, smtp_host=smtp.host,
                                 smtp_port=smtp.port, public_url="http://127.0.0.1:8080"))  # fmt: skip
    await add_subscribers(database, "telegram", [str(600000 + i) for i in range(10_000)])
    service = Service(load(cfg, env={"CONSOLE_SECRET": SECRET, "CONSOLE_TOKEN": "42:TEST"}), dsn=database)
    await service.start()
    try:
        yield Stack(database, service, telegram, smtp)
    finally:
        await service.stop()
        await telegram.stop()
        await smtp.stop()


async def test_an_approver_sees_the_estimate_and_its_advice_and_pauses_and_resumes_telegram(
    slow_stack: Stack, browser: Any
) -> None:
    stack, base = slow_stack, slow_stack.base
    await create_staff(stack.dsn, "room-lead", "approver")
    ctx = await browser.new_context(viewport=DESKTOP, locale="ja-JP")
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await log_in(page, base, "room-lead")
    assert stack.service.pipeline is not None
    await stack.service.pipeline.ingest(make_alert("slow-e2e", headline="沼津市に大雨警報"))
    await page.goto(f"{base}/")
    await expect(page.locator("body")).to_have_attribute("data-live", "on")
    chan = page.locator('tr[data-alert] div.chan[data-channel="telegram"]').first
    advice = chan.locator('[data-k="advice"]')
    await expect(advice).to_be_visible()
    text = await advice.inner_text()
    assert "Telegram recipients at 30 msg/s take" in text and "district channel" in text, text
    assert "minutes" in await chan.locator('[data-k="eta"]').inner_text()
    await shot(page, "dashboard-6-estimate-advice-desktop")

    row = page.locator('#health tr[data-channel="telegram"]')
    await row.locator('input[name="reason"]').fill("drill: provider check")
    await row.locator('form[action="/channels/telegram/pause"] button').click()
    await page.wait_for_load_state()
    await expect(page.locator("body")).to_have_attribute("data-live", "on")
    await expect(row.locator('[data-k="state"]')).to_contain_text("operator")
    await expect(chan.locator('[data-k="eta"]')).to_have_text("unknown (held until resumed)")
    await expect(page.locator("#pausebanner")).to_contain_text("telegram")
    await shot(page, "dashboard-7-paused-desktop")
    conn = await asyncpg.connect(stack.dsn)
    try:
        actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log ORDER BY id")]
        assert "channel.pause" in actions
        await row.locator('form[action="/channels/telegram/resume"] button').click()
        await page.wait_for_load_state()
        await expect(row.locator('[data-k="state"]')).to_have_text("sending")
        actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log ORDER BY id")]
        assert actions[-1] == "channel.resume"
    finally:
        await conn.close()
    assert not errors, errors
    await ctx.close()
