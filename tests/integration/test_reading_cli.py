"""The operators' reading commands, run as operators run them (subprocesses, real database, stand-ins).

``dispatcher reconcile`` against a daemon's real fan-out through the Telegram and Mastodon
stand-ins, then with planted mismatches; ``deliveries`` by public id as JSON and text;
``--config`` after the subcommand; ``status --follow``; and what a newcomer met: ``dispatcher
status`` while ``dispatcher demo`` runs reads the demo's database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from channels.mastodon import MastodonConfig
from channels.telegram import TelegramConfig
from dispatcher.app import Service
from dispatcher.model import Area
from dispatcher.settings import ChannelSettings, Settings, load
from dispatcher.standins.mastodon import MastodonStandIn
from dispatcher.standins.telegram_api import TelegramStandIn
from tests.integration.test_delivery import alert, telegram_standin, wait_until
from tests.samples import add_subscribers
from tests.staffing import staff_session

REPO = Path(__file__).resolve().parents[2]
CHATS = [str(660_000 + i) for i in range(4)]
TOKEN = "42:RECONCILE"
SECRETS = {"TELEGRAM_TOKEN": TOKEN, "MASTODON_TOKEN": "mastodon-token"}


@dataclass
class Stack:
    dsn: str
    telegram: TelegramStandIn
    mastodon: MastodonStandIn
    config: Path
    public_id: str
    settings: Settings

    async def cli(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        """``dispatcher ARGS`` (``--config`` given after the command, as the README allows)."""
        return await run_cli(*args, "--config", str(self.config), env={**SECRETS, **(env or {})})


async def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str]:
    full = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | (env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher",
        *args,
        cwd=str(REPO),
        env=full,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def stack(database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    await add_subscribers(database, "telegram", CHATS)
    mastodon = MastodonStandIn("mastodon-token")
    await mastodon.start()
    try:
        async with telegram_standin() as tg:
            config = tmp_path / "operator.toml"
            config.write_text(
                f'[service]\nstate_dir = "{tmp_path}"\nlog_level = "WARNING"\n[database]\nurl = "{database}"\n'
                "[web]\nenabled = false\n[jma]\nenabled = false\n"
                f'[channels.telegram]\nenabled = true\ntoken_env = "TELEGRAM_TOKEN"\nbase_url = "{tg.base_url}"\n'
                f'[channels.mastodon]\nenabled = true\ntoken_env = "MASTODON_TOKEN"\n'
                f'base_url = "{mastodon.base_url}"\n',
                encoding="utf-8",
            )
            base = load(None, env={})
            settings = dataclasses.replace(
                base,
                service=dataclasses.replace(base.service, state_dir=tmp_path),
                web=dataclasses.replace(base.web, enabled=False),
                sources={**base.sources, "jma": dataclasses.replace(base.sources["jma"], enabled=False)},
                delivery=dataclasses.replace(base.delivery, poll_interval=0.2),
                channels={
                    "telegram": ChannelSettings(
                        "telegram", enabled=True, options=TelegramConfig(token=TOKEN, base_url=tg.base_url)
                    ),
                    "mastodon": ChannelSettings(
                        "mastodon",
                        enabled=True,
                        options=MastodonConfig(base_url=mastodon.base_url, token="mastodon-token"),
                    ),
                },
            )
            service = Service(settings, dsn=database)
            await service.start()
            try:
                assert service.pipeline is not None
                await service.pipeline.ingest(alert("truth-1"))
                # Another prefecture's alert: Mastodon posts nothing (by design, not a lie).
                tokyo = dataclasses.replace(
                    alert("truth-tokyo"), source="jma", areas=(Area("東京都千代田区", ("1310100",)),)
                )
                await service.pipeline.ingest(tokyo)
                await wait_until(lambda: len(tg.messages) == len(CHATS) and len(mastodon.posted) == 1, 20, "sends")
                await wait_until(lambda: settled(database), 10, "every delivery recorded")
            finally:
                await service.stop()
            conn = await asyncpg.connect(database)
            try:
                public_id = await conn.fetchval("SELECT public_id FROM alerts WHERE identifier = 'truth-1'")
            finally:
                await conn.close()
            yield Stack(database, tg, mastodon, config, public_id, settings)
    finally:
        await mastodon.stop()


async def settled(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM deliveries WHERE state <> 'delivered'") == 0
    finally:
        await conn.close()


async def test_reconcile_confirms_a_true_run_then_finds_planted_mismatches(stack: Stack) -> None:
    code, out, err = await stack.cli("reconcile", "--json")
    assert code == 0, err + out
    report = json.loads(out)
    assert report["ok"] is True and report["mismatches"] == 0
    assert report["channels"]["telegram"] == {"unchecked": len(CHATS)}
    assert report["channels"]["mastodon"] == {"confirmed": 1, "skipped": 1}

    # Plant: a delivery marked delivered without the provider's id, and a status the provider no longer has.
    conn = await asyncpg.connect(stack.dsn)
    try:
        bare = await conn.fetchval(
            "UPDATE deliveries SET remote_id = NULL WHERE id = (SELECT min(id) FROM deliveries"
            " WHERE channel = 'telegram') RETURNING id"
        )
        toot = await conn.fetchval(
            "SELECT remote_id FROM deliveries WHERE channel = 'mastodon' AND remote_id IS NOT NULL"
        )
    finally:
        await conn.close()
    del stack.mastodon.toots[toot]

    code, out, err = await stack.cli("reconcile", "--json")
    assert code == 1, err + out
    report = json.loads(out)
    assert report["ok"] is False and report["mismatches"] == 2
    found = {
        (f["delivery_id"] if f["channel"] == "telegram" else f["remote_id"], f["verdict"]) for f in report["findings"]
    }
    assert found == {(bare, "no_provider_id"), (toot, "missing")}
    # The same as text, and --since after the window finds nothing to compare.
    code, out, _err = await stack.cli("reconcile")
    assert code == 1 and "MISMATCH: 2" in out and f"delivery {bare}" in out and "404" in out
    code, out, _err = await stack.cli("reconcile", "--since", "2999-01-01T00:00")
    assert code == 0 and "OK: no mismatch" in out
    code, _out, err = await stack.cli("reconcile", "--since", "yesterday")
    assert code == 2 and "ISO 8601" in err


async def test_the_reconcile_page_shows_the_same_report_behind_the_login(stack: Stack) -> None:
    toot = next(iter(stack.mastodon.toots))
    del stack.mastodon.toots[toot]
    settings = dataclasses.replace(stack.settings, web=dataclasses.replace(stack.settings.web, enabled=True, port=0))
    service = Service(settings, dsn=stack.dsn)
    await service.start()
    try:
        url = service.web_url
        async with aiohttp.ClientSession() as anonymous, anonymous.get(f"{url}/api/reconcile") as resp:
            assert resp.status == 401
        async with staff_session(str(url), stack.dsn) as http:
            async with http.get(f"{url}/api/reconcile") as resp:
                assert resp.status == 200
                report = await resp.json()
            async with http.get(f"{url}/reconcile") as resp:
                assert resp.status == 200
                text = await resp.text()
            async with http.get(f"{url}/reconcile?since=soon") as resp:
                assert resp.status == 400 and "ISO 8601" in await resp.text()
    finally:
        await service.stop()
    assert report["mismatches"] == 1 and [f["remote_id"] for f in report["findings"]] == [toot]
    assert report["channels"]["telegram"] == {"unchecked": len(CHATS)}
    assert "1 mismatch" in text and toot in text and "404" in text


async def test_deliveries_by_public_id_as_json_and_text(stack: Stack) -> None:
    code, out, err = await stack.cli("deliveries", stack.public_id, "--channel", "telegram", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["alert"]["public_id"] == stack.public_id
    rows = report["deliveries"]
    assert len(rows) == len(CHATS) and {r["state"] for r in rows} == {"delivered"}
    assert all(r["remote_id"] for r in rows)
    # Addresses are masked as on the pages: no chat id in the output.
    assert not any(chat in out for chat in CHATS)
    assert report["counts"]["telegram"]["delivered"] == len(CHATS)

    conn = await asyncpg.connect(stack.dsn)
    try:
        number = await conn.fetchval("SELECT id FROM alerts WHERE public_id = $1", stack.public_id)
    finally:
        await conn.close()
    code, out, _err = await stack.cli("deliveries", str(number), "--state", "failed")
    assert code == 0 and "no deliveries" in out
    code, out, err = await stack.cli("deliveries", stack.public_id, "--state", "delivered")
    assert code == 0 and out.count("delivered") >= len(CHATS) + 1, out
    code, _out, err = await stack.cli("deliveries", "no-such-alert")
    assert code == 1 and "no alert" in err


async def test_config_after_the_subcommand_and_status_follow(stack: Stack) -> None:
    # Before and after the command alike (the README says every command takes it).
    code, before, err = await run_cli("--config", str(stack.config), "status", "--json", env=SECRETS)
    assert code == 0, err
    code, after, err = await stack.cli("status", "--json")
    assert code == 0, err
    assert [a["identifier"] for a in json.loads(after)["alerts"]] == [
        a["identifier"] for a in json.loads(before)["alerts"]
    ]
    # Nested commands too.
    code, out, err = await stack.cli("user", "list", "--json")
    assert code == 0 and json.loads(out) == [], err
    code, out, err = await stack.cli("audit", "--json")
    assert code == 0 and json.loads(out) == [], err

    code, out, err = await stack.cli("status", "--follow", "--until-done")
    assert code == 0, err
    assert "truth-1" not in out  # events are shown, not identifiers
    assert f"{len(CHATS)}/{len(CHATS)}" in out and "telegram" in out and "mastodon" in out, out
    code, out, err = await stack.cli("status", "--follow", "--until-done", "--json")
    assert code == 0, err
    [line] = out.splitlines()
    assert {a["identifier"] for a in json.loads(line)["alerts"]} == {"truth-1", "truth-tokyo"}


async def test_status_while_the_demo_runs_reads_the_demos_database(tmp_path: Path) -> None:
    """The newcomer's case: `dispatcher demo` in one terminal, `dispatcher status` in another."""
    if os.environ.get("DATABASE_URL"):
        pytest.skip("the demo's discovery is for the embedded database (DATABASE_URL names one)")
    config = tmp_path / "site.toml"
    config.write_text(f'[service]\nstate_dir = "{tmp_path}"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher",
        "demo",
        "--port",
        "0",
        "--interval",
        "0.5",
        "--config",
        str(config),
        cwd=str(REPO),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_until(lambda: (tmp_path / "demo.json").exists(), 120, "the demo to start")
        report: dict[str, object] = {}

        async def seen() -> bool:
            code, out, err = await run_cli("status", "--json", "--config", str(config))
            assert code == 0, err
            report.update(json.loads(out), stderr=err)
            return bool(report["alerts"])

        await wait_until(seen, 60, "the demo's alerts in `dispatcher status`")
        assert "reading the running demo's database 'dispatcher_demo'" in str(report["stderr"])
        # Its Mastodon posts are read back from its own stand-in.
        truth: dict[str, object] = {}

        async def confirmed() -> bool:
            code, out, err = await run_cli("reconcile", "--json", "--config", str(config))
            assert code == 0, err + out
            truth.update(json.loads(out))
            channels = truth["channels"]
            assert isinstance(channels, dict)
            return bool(channels.get("mastodon", {}).get("confirmed"))

        await wait_until(confirmed, 60, "a Mastodon post of the demo confirmed by its stand-in")
        assert truth["mismatches"] == 0
    finally:
        demo.send_signal(signal.SIGINT)
        await asyncio.wait_for(demo.wait(), timeout=60)
    assert not (tmp_path / "demo.json").exists(), "the demo forgets itself when it stops"
    # Without a running demo, the CLI reads its own database again (and says nothing of the demo).
    code, out, err = await run_cli("status", "--json", "--config", str(config))
    assert code == 0 and "running demo" not in err and json.loads(out)["alerts"] == []
