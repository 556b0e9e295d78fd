"""The staff console in a real browser: 避難指示 for two districts from compose to the residents' phones, and its 取消.

Playwright for Python drives Debian's Chromium (``/usr/bin/chromium``; ``playwright
install`` is never needed). The daemon runs in-process on a free port against the
Telegram Bot API and SMTP stand-ins and a real PostgreSQL. An author logs in, composes
避難指示 on the district map (a click for one district, Enter on the other, as a
keyboard user would), sees every channel's preview, submits; an approver logs in on a
phone-sized screen and approves; the alert reaches both stand-ins; the approver sends
the prepared 取消 and the retraction arrives too.

Measured and printed: the author's steps and seconds (goal: six steps or fewer, under a
minute) and the time from the approver's click to the first provider request (goal:
under 1 s). Screenshots (phone 390 px and desktop) go to ``tests/e2e/screenshots/``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_console import Stack, start_stack
from tests.staffing import PASSWORD, create_staff

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip
SHOTS = Path(__file__).resolve().parent / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


@pytest.fixture
async def stack(database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    s = await start_stack(database, tmp_path)
    try:
        yield s
    finally:
        await s.service.stop()
        await s.telegram.stop()
        await s.smtp.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield b
        finally:
            await b.close()


async def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def log_in(page: Any, base: str, username: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill('input[name="username"]', username)
    await page.fill('input[name="password"]', PASSWORD)
    await page.click('button[type="submit"]')
    await page.wait_for_load_state()


async def click_district(page: Any, code: str, *, touch: bool = False) -> None:
    """A real click (or tap) on the district's label (drawn inside it; the label lets clicks through)."""
    label = page.locator(f'g[data-code="{code}"] text')
    # In the middle of the screen: not under the form's sticky button bar.
    await label.evaluate("e => e.scrollIntoView({block: 'center'})")
    box = await label.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await (page.touchscreen.tap(x, y) if touch else page.mouse.click(x, y))


async def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def test_evacuation_order_for_two_districts_is_composed_approved_sent_and_retracted(
    stack: Stack, browser: Any
) -> None:
    base = stack.base
    await create_staff(stack.dsn, "kikikanri-a", "author")
    await create_staff(stack.dsn, "kikikanri-b", "approver")
    print(f"\nscreenshots: {SHOTS}")

    # -- the author, at a desktop --------------------------------------------------------------------
    author_ctx = await browser.new_context(viewport=DESKTOP, locale="ja-JP")
    author = await author_ctx.new_page()
    errors: list[str] = []
    author.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await log_in(author, base, "kikikanri-a")
    assert author.url.endswith("/console")
    await shot(author, "1-console-desktop")

    started = time.monotonic()
    steps = 0
    await author.click("text=避難指示（警戒レベル4）")  # 1: the kind
    steps += 1
    await author.wait_for_selector("svg.districtmap")
    await click_district(author, "numazu-heda")  # 2: 戸田, clicked on the map
    steps += 1
    await author.locator('g[data-code="numazu-nishiura"]').focus()
    await author.keyboard.press("Enter")  # 3: 西浦, chosen with the keyboard
    steps += 1
    # Waits by locators: the page's CSP (script-src 'self') forbids evaluating strings, Playwright's too.
    await expect(author.locator("#areanames")).to_have_text("西浦、戸田")
    await expect(author.locator('input[name="headline_ja"]')).to_have_value("【警戒レベル4】西浦、戸田に避難指示")
    # Every enabled channel's preview, in every language, with its counter.
    await author.wait_for_selector("#previewbody .preview >> text=西浦、戸田に避難指示")
    previews = await author.locator("#previewbody .preview").count()
    assert previews == 6, "telegram and email, each in ja, ja-easy and en"
    counters = await author.locator("#previewbody .counter").all_inner_texts()
    assert any("/ 4096" in c for c in counters) and any("/ 280" in c for c in counters)
    assert await author.locator('g[data-code="numazu-heda"]').get_attribute("aria-checked") == "true"
    assert await author.locator('input[name="area"][value="numazu-nishiura"]').is_checked()
    await shot(author, "2-compose-desktop")
    await author.click('button[value="submit"]')  # 4: submit for approval
    steps += 1
    await author.wait_for_url("**/console/messages/*")
    author_seconds = time.monotonic() - started
    message_id = int(author.url.rsplit("/", 1)[1])
    assert "承認待ち" in await author.inner_text("main")
    # The author's own message offers no approval to them.
    assert await author.locator("#approve").count() == 0
    await shot(author, "3-submitted-desktop")
    assert not errors, errors

    # The same form on a phone, for the screenshot (nothing is sent from it).
    phone_author = await browser.new_context(viewport=PHONE, locale="ja-JP", is_mobile=True, has_touch=True)
    pa = await phone_author.new_page()
    await log_in(pa, base, "kikikanri-a")
    await pa.goto(f"{base}/console/new?kind=避難指示")
    await click_district(pa, "numazu-heda", touch=True)
    await expect(pa.locator("#areanames")).to_have_text("戸田")
    await shot(pa, "4-compose-phone")
    await phone_author.close()

    # -- the approver, on a phone ---------------------------------------------------------------------
    approver_ctx = await browser.new_context(viewport=PHONE, locale="ja-JP", is_mobile=True, has_touch=True)
    approver = await approver_ctx.new_page()
    await log_in(approver, base, "kikikanri-b")
    await approver.click(f'a[href="/console/messages/{message_id}"] >> nth=0')
    await approver.wait_for_selector("#approve")
    await shot(approver, "5-approve-phone")
    before = len(stack.telegram.messages)
    clicked = time.monotonic()
    await approver.click("#approve")
    await wait_for(lambda: len(stack.telegram.messages) > before, 5, "the first Telegram request")
    first_request = min(m.at for m in stack.telegram.messages[before:]) - clicked
    await wait_for(lambda: len(stack.smtp.messages) >= 1 and len(stack.telegram.messages) >= before + 2, 10,
                   "the alert at every subscriber")  # fmt: skip
    await approver.wait_for_load_state()
    await approver.reload()
    assert "配信済み" in await approver.inner_text("main")
    await shot(approver, "6-sent-phone")

    heda = next(m for m in stack.telegram.messages if m.chat_id == "300001")
    assert "【警戒レベル4】西浦、戸田に避難指示" in heda.text and "/alerts/" in heda.text
    [mail] = stack.smtp.messages
    assert list(mail.rcpt_tos) == ["nishiura@example.jp"]
    assert "避難指示" in str(mail.message["Subject"])
    drill = next(m for m in stack.telegram.messages if m.chat_id == "900001")
    assert not drill.text.startswith("【訓練】"), "a live alert, to the test recipient of 戸田 too"

    # -- the retraction, one step ---------------------------------------------------------------------
    await approver.click("#cancel-取消")
    await wait_for(lambda: any("【取消】" in m.text for m in stack.telegram.messages if m.chat_id == "300001"), 10,
                   "the retraction on Telegram")  # fmt: skip
    await wait_for(lambda: len(stack.smtp.messages) == 2, 10, "the retraction by e-mail")
    assert "【取消】" in str(stack.smtp.messages[1].message["Subject"])
    await approver.reload()
    assert "取消済み" in await approver.inner_text("main")
    await shot(approver, "7-cancelled-phone")

    # The dashboard and the exercise console, for the record.
    dash = await author_ctx.new_page()
    await dash.goto(f"{base}/")
    await shot(dash, "8-dashboard-desktop")
    await dash.goto(f"{base}/exercise/new?kind=避難指示")
    assert "訓練 EXERCISE" in await dash.inner_text("body")
    await shot(dash, "9-exercise-compose-desktop")

    print(f"author: {steps} steps, {author_seconds:.2f} s for 避難指示 for two districts (after logging in)")
    print(f"approver's click -> first provider request: {first_request * 1000:.0f} ms")
    assert steps <= 6 and author_seconds < 60
    assert first_request < 1.0
