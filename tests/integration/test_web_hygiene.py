"""The web server as an outsider meets it: bad requests, a failing handler, a database away.

The daemon runs in-process (its real aiohttp app on a free port, a real PostgreSQL, the
Telegram and SMTP stand-ins).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from dispatcher.app import Service
from dispatcher.settings import load
from dispatcher.standins.smtp import SmtpStandIn
from dispatcher.standins.telegram_api import TelegramStandIn
from dispatcher.store.subscribers import subscribe
from dispatcher.web.app import create_app
from sources.broadcast.examples import cap_body, json_body, signed_headers

SECRET = "web-hygiene-test-secret-0123456789abcdef"
JST = timezone(timedelta(hours=9))
TEXT = "こちらは、防災ぬまづです。戸田地区に土砂災害の避難指示を発令しました。"
CONFIG = """
[service]
state_dir = "{state}"
[web]
port = 0
[jma]
enabled = false
[delivery]
poll_interval = 0.2
backoff_base = 0.2
backoff_max = 1.0
[broadcast]
enabled = true
secret_env = "HYGIENE_SECRET"
hold_emergency = false
[channels.telegram]
enabled = true
token_env = "HYGIENE_TOKEN"
base_url = "{telegram}"
[channels.email]
enabled = true
host = "{smtp_host}"
port = {smtp_port}
"""


@dataclasses.dataclass
class Stack:
    dsn: str
    service: Service
    telegram: TelegramStandIn
    smtp: SmtpStandIn

    @property
    def base(self) -> str:
        assert self.service.web_url is not None
        return self.service.web_url

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.base)
        assert parts.hostname is not None and parts.port is not None
        return parts.hostname, parts.port

    async def post(self, body: bytes, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
        headers = signed_headers(SECRET, body, content_type)
        async with aiohttp.ClientSession() as http, http.post(self.base + "/hooks/broadcast", data=body,
                                                              headers=headers) as r:  # fmt: skip
            return r.status, await r.json(content_type=None)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()


@pytest.fixture
async def stack(database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    telegram, smtp = TelegramStandIn(), SmtpStandIn()
    await telegram.start()
    await smtp.start()
    cfg = tmp_path / "dispatcher.toml"
    cfg.write_text(
        CONFIG.format(
            state=tmp_path,
            telegram=telegram.base_url,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
        )
    )
    conn = await asyncpg.connect(database)
    try:
        await subscribe(conn, channel="telegram", address="200001", areas=["numazu-heda"], language="ja")
        await subscribe(conn, channel="email", address="yamada.hanako@example.jp", areas=["numazu-heda"])
    finally:
        await conn.close()
    service = Service(load(cfg, env={"HYGIENE_SECRET": SECRET, "HYGIENE_TOKEN": "42:TEST"}), dsn=database)
    await service.start()
    try:
        yield Stack(database, service, telegram, smtp)
    finally:
        await service.stop()
        await telegram.stop()
        await smtp.stop()


@contextlib.asynccontextmanager
async def served(stack: Stack, *routes: web.RouteDef) -> AsyncIterator[tuple[str, int]]:
    """The daemon's own app with ``routes`` added, served as the daemon serves it; its address."""
    app = create_app(stack.service)
    app.router.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield "127.0.0.1", runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def read_all(request: web.Request) -> web.Response:
    """A handler that needs the whole body (aiohttp's read(), bounded by client_max_size)."""
    return web.json_response({"bytes": len(await request.read())})


def now() -> datetime:
    return datetime.now(JST).replace(microsecond=0)


async def one_alert(stack: Stack) -> int:
    status, answer = await stack.post(json_body("WEB-1", TEXT, ["heda"], aired_at=now()))
    assert status == 202, answer
    return int(answer["alert_id"])


# -- item 6: requests that crashed a handler ----------------------------------------------------


async def test_bad_paths_and_query_strings_are_4xx_with_a_reason(stack: Stack) -> None:
    alert_id = await one_alert(stack)
    bad = {
        "/alerts/%00": 404,
        "/alerts/%00/deliveries": 404,
        "/api/alerts/%00/deliveries": 404,
        "/alerts/%C2%B2": 404,  # '²'.isdigit() is True, int('²') raises
        "/alerts/%C2%B2/deliveries": 404,
        "/deliveries/%C2%B2": 404,
        "/api/deliveries/%00": 404,
        "/alerts/" + "x" * 5000: 404,
        f"/alerts/{alert_id}/deliveries?channel=%00": 400,
        f"/api/alerts/{alert_id}/deliveries?channel=%00": 400,
        f"/api/alerts/{alert_id}/deliveries?channel=pigeon": 400,
        f"/alerts/{alert_id}/deliveries?after=99999999999999999999999": 400,
        f"/api/alerts/{alert_id}/deliveries?after=-1": 400,
        f"/api/alerts/{alert_id}/deliveries?limit=%C2%B2": 400,
        f"/api/alerts/{alert_id}/deliveries?state=%00": 400,
        "/api/alerts?limit=abc": 400,
        "/api/alerts?limit=-1": 400,
        "/api/alerts?limit=99999999999999999999999": 400,
    }
    async with aiohttp.ClientSession() as http:
        for path, expected in bad.items():
            async with http.get(yarl_raw(stack.base + path)) as resp:
                text = await resp.text()
                assert resp.status == expected, (path, resp.status, text[:300])
                assert text.strip() and "Traceback" not in text, path
        # What is allowed still works.
        async with http.get(f"{stack.base}/api/alerts?limit=5") as resp:
            assert resp.status == 200 and len((await resp.json())["alerts"]) == 1
        async with http.get(f"{stack.base}/api/alerts/{alert_id}/deliveries?channel=email&after=0") as resp:
            assert resp.status == 200


def yarl_raw(url: str) -> Any:
    """The URL exactly as written: percent-escapes reach the server as they are."""
    import yarl

    return yarl.URL(url, encoded=True)


async def test_hostile_broadcasts_are_400_with_the_reason_not_a_database_error(stack: Stack) -> None:
    aired = now()
    hostile = [
        (b"[" * 100_000, "application/json", "nested too deeply"),
        (
            json.dumps({"id": "S-1", "aired_at": aired.isoformat(), "priority": "emergency", "groups": ["heda"],
                        "text": TEXT, "sender": "s" * 20_000}).encode(),
            "application/json",
            "sender must be at most 200 characters",
        ),
        (
            json.dumps({"id": "S-2", "aired_at": aired.isoformat(), "priority": "emergency", "groups": ["heda"],
                        "text": TEXT, "sender": "s" * 3_000}).encode(),
            "application/json",
            "sender must be at most 200 characters",
        ),
        (cap_body("I" * 5000, TEXT, ["heda"], sent=aired), "application/cap+xml", "identifier must be at most 200"),
        (
            json.dumps({"id": "S-3", "aired_at": "0001-01-01T00:00:00+14:00", "priority": "emergency",
                        "groups": ["heda"], "text": TEXT}).encode(),
            "application/json",
            "out of range",
        ),
        (
            json.dumps({"id": "S-4\u0000", "aired_at": aired.isoformat(), "priority": "emergency",
                        "groups": ["heda"], "text": TEXT}).encode(),
            "application/json",
            "U+0000",
        ),
    ]  # fmt: skip
    for body, content_type, reason in hostile:
        status, answer = await stack.post(body, content_type)
        assert (status, answer.get("error")) == (400, "malformed"), (reason, status, answer)
        assert reason in answer["reason"]
    assert await stack.fetch("SELECT 1 FROM alerts") == []
    # A broadcast refused for its content may be sent again, corrected: nothing was claimed.
    status, _ = await stack.post(json_body("S-1", TEXT, ["heda"], aired_at=aired))
    assert status == 202


async def test_an_unexpected_exception_is_a_plain_500_logged_once(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("internal detail: password=hunter2")

    caplog.set_level(logging.INFO)
    async with (
        served(stack, web.get("/broken", broken)) as (host, port),
        aiohttp.ClientSession() as http,
        http.get(f"http://{host}:{port}/broken", headers={"Accept": "text/html"}) as resp,
    ):
        text = await resp.text()
    assert resp.status == 500 and resp.content_type == "text/plain"
    assert "hunter2" not in text and "Traceback" not in text and "RuntimeError" not in text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is RuntimeError
    assert errors[0].__dict__.get("path") == "/broken"


async def test_database_unavailable_is_a_503_json_on_operator_pages_and_the_webhook(tmp_path: Path) -> None:
    from dispatcher.demo import with_database
    from tests.integration.test_delivery import PrivateServer

    server = PrivateServer(tmp_path / "pg-private")
    try:
        base = await server.start()
        conn = await asyncpg.connect(base)
        try:
            await conn.execute("CREATE DATABASE outage_test")
        finally:
            await conn.close()
        cfg = tmp_path / "dispatcher.toml"
        cfg.write_text(
            f'[service]\nstate_dir = "{tmp_path}"\n[web]\nport = 0\n[jma]\nenabled = false\n'
            '[broadcast]\nenabled = true\nsecret_env = "HYGIENE_SECRET"\n'
        )
        service = Service(load(cfg, env={"HYGIENE_SECRET": SECRET}), dsn=with_database(base, "outage_test"))
        await service.start()
        try:
            assert service.web_url is not None
            async with aiohttp.ClientSession() as http:
                async with http.get(service.web_url + "/api/alerts") as resp:
                    assert resp.status == 200
                await server.stop()
                for path in ("/", "/api/alerts", "/alerts/1", "/alerts/1/deliveries", "/api/deliveries/1"):
                    async with http.get(service.web_url + path) as resp:
                        assert resp.status == 503, (path, resp.status, await resp.text())
                        assert (await resp.json())["error"] == "unavailable", path
                body = json_body("OUT-1", TEXT, ["heda"], aired_at=now())
                async with http.post(service.web_url + "/hooks/broadcast", data=body,
                                     headers=signed_headers(SECRET, body, "application/json")) as resp:  # fmt: skip
                    assert resp.status == 503 and (await resp.json())["error"] == "unavailable"
                await server.start_again()
        finally:
            await service.stop()
    finally:
        await server.close()
