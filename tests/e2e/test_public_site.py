"""The public site in a real browser (Playwright, the system's Chromium) at phone and desktop width, checked by axe.

The daemon runs in-process on real JMA telegrams (the demo's) plus an exercise and a
cancellation. Each page is loaded at 390 px and 1280 px, its resident-first content
checked, axe-core (from npm, injected into the page) run on it, and a screenshot saved
to ``tests/e2e/screenshots/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from dispatcher.app import Service
from dispatcher.model import MsgType, Status
from dispatcher.settings import load
from sources.jma.parser import parse_telegram
from sources.outcome import Parsed
from tests.integration.conftest import database, pg_server, template_db  # noqa: F401 (fixtures)
from tests.integration.test_publication import free_port
from tests.samples import tsunami_warning

HERE = Path(__file__).parent
SHOTS = HERE / "screenshots"
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip
WIDTHS = {"phone": (390, 844), "desktop": (1280, 900)}

playwright_api = pytest.importorskip("playwright.async_api")


def axe_script() -> Path:
    """axe-core from the npm registry, installed into tests/e2e/node_modules when missing."""
    if not AXE.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install axe-core for the browser tests (apt-get install npm)")
        subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=300)
    return AXE


@pytest.fixture
async def site(database: str, tmp_path: Path) -> AsyncIterator[tuple[str, dict[str, str]]]:  # noqa: F811
    port = free_port()
    cfg = tmp_path / "d.toml"
    cfg.write_text(
        f'[service]\nstate_dir = "{tmp_path}"\npublic_url = "http://127.0.0.1:{port}"\n'
        f"[web]\nport = {port}\n[jma]\nenabled = false\n"
    )
    service = Service(load(cfg, env={"DATABASE_URL": database}), dsn=database)
    await service.start()
    assert service.context is not None and service.publication is not None
    ids: dict[str, str] = {}
    folder = resources.files("config") / "demo" / "telegrams"
    for name in sorted(p.name for p in folder.iterdir()):
        outcome = parse_telegram((folder / name).read_bytes(), url=name)
        if isinstance(outcome, Parsed):
            result = await service.context.emit(outcome.alert)
            ids[outcome.alert.kind or name] = str(result.public_id)
    tsunami = await service.context.emit(tsunami_warning(public_id=""))
    ids["tsunami"] = str(tsunami.public_id)
    drill = tsunami_warning(identifier="drill-1", status=Status.EXERCISE, public_id="", sender="沼津市")
    ids["exercise"] = str((await service.context.emit(drill)).public_id)
    cancel = replace(
        tsunami_warning(), identifier="c-1", msg_type=MsgType.CANCEL, public_id="",
        references=(tsunami_warning().identifier,), event="津波警報解除", headline="津波警報を解除しました。",
    )  # fmt: skip
    ids["cancel"] = str((await service.context.emit(cancel)).public_id)
    await service.publication.site.rebuild(None)
    try:
        assert service.web_url
        yield service.web_url, ids
    finally:
        await service.stop()


async def check_page(page: Any, url: str, name: str, axe: str) -> dict[str, Any]:
    response = await page.goto(url)
    assert response is not None and response.status == 200, url
    await page.add_script_tag(content=axe)
    result = await page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:3])
           for v in result["violations"] if v["impact"] in ("serious", "critical")]  # fmt: skip
    assert not bad, f"{name}: {json.dumps(bad, ensure_ascii=False)}"
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"] + 1, f"{name} overflows sideways: {width}px"
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    return result  # type: ignore[no-any-return]


async def test_public_pages_at_phone_and_desktop_width_pass_axe(site: tuple[str, dict[str, str]]) -> None:
    base, ids = site
    axe = axe_script().read_text()
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for label, (w, h) in WIDTHS.items():
                # The CSP rightly forbids scripts; axe is the test's, injected past it.
                context = await browser.new_context(viewport={"width": w, "height": h}, bypass_csp=True, locale="ja-JP")
                page = await context.new_page()
                await check_page(page, f"{base}/public/", f"home-{label}", axe)
                assert await page.locator("svg.map").count() == 1
                assert await page.locator('a[href="/"]').count() == 0  # never the operators' dashboard
                await check_page(page, f"{base}/alerts/{ids['tsunami']}", f"alert-cancelled-{label}", axe)
                assert "取り消されました" in await page.locator(".state-note").inner_text()
                await check_page(page, f"{base}/alerts/{ids['VXSE53']}", f"alert-quake-{label}", axe)
                here = await page.locator("section.here").inner_text()
                assert "沼津市では" in here and "震度" in here and "マグニチュード" in here
                assert await page.locator("details summary").count() == 1  # the other areas, folded
                assert await page.locator("details ul.areas").is_visible() is False
                await check_page(page, f"{base}/alerts/{ids['exercise']}", f"alert-exercise-{label}", axe)
                assert "訓練" in await page.locator(".exercise-banner").inner_text()
                await check_page(page, f"{base}/public/districts/numazu-heda/", f"district-heda-{label}", axe)
                assert "戸田" in await page.locator("h1").inner_text()
                await check_page(page, f"{base}/alerts/{ids['VXSE53']}/en", f"alert-quake-en-{label}", axe)
                assert await page.locator("html").get_attribute("lang") == "en"
                await check_page(page, f"{base}/public/archive/", f"archive-{label}", axe)
                await check_page(page, f"{base}/open-data/", f"open-data-{label}", axe)
                await check_page(page, f"{base}/subscribe", f"subscribe-{label}", axe)
                for feed in ("/feeds/atom", "/feeds/atom/numazu-heda", "/feeds/cap"):
                    response = await page.goto(base + feed)
                    assert response is not None and response.status == 200
                    assert response.headers["content-type"].startswith("application/atom+xml")
                    assert "<feed" in (await response.text())
                await context.close()
        finally:
            await browser.close()
