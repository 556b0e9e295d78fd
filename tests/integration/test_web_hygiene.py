"""The web server as an outsider meets it: bad requests, slow clients, big bodies, headers, privacy.

The daemon runs in-process (its real aiohttp app on a free port, a real PostgreSQL, the
Telegram and SMTP stand-ins) with short header and body timeouts, so slow clients can be
seen being cut off. Raw sockets play the slow and the greedy clients, as aiohttp's own
client would not trickle bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
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
from dispatcher.web.auth import public
from dispatcher.web.hygiene import server_options
from sources.broadcast.examples import cap_body, json_body, signed_headers
from tests.integration.test_path import wait_settled
from tests.staffing import staff_session

SECRET = "web-hygiene-test-secret-0123456789abcdef"
JST = timezone(timedelta(hours=9))
TEXT = "こちらは、防災ぬまづです。戸田地区に土砂災害の避難指示を発令しました。"
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
CONFIG = """
[service]
state_dir = "{state}"
[web]
port = 0
header_timeout_seconds = {header_timeout}
body_timeout_seconds = {body_timeout}
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
            header_timeout=HEADER_TIMEOUT,
            body_timeout=BODY_TIMEOUT,
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
    app = create_app(stack.service.web_context())
    app.router.add_routes(routes)
    runner = web.AppRunner(app, access_log=None, **server_options(stack.service.settings.web))
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
    async with staff_session(stack.base, stack.dsn) as http:
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
        served(stack, web.get("/broken", public(broken))) as (host, port),
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


# -- item 9: headers, slow clients, big bodies ---------------------------------------------------


async def test_security_headers_on_every_page_and_no_store_for_operators(stack: Stack) -> None:
    alert_id = await one_alert(stack)
    [(delivery_id,)] = await stack.fetch("SELECT id FROM deliveries WHERE channel = 'telegram'")
    [(public_id,)] = await stack.fetch("SELECT public_id FROM alerts WHERE id = $1", alert_id)
    operator = [
        "/",
        f"/alerts/{alert_id}/deliveries",
        f"/deliveries/{delivery_id}",
        "/api/alerts",
        f"/api/alerts/{alert_id}/deliveries",
        f"/api/deliveries/{delivery_id}",
        "/healthz",
        "/no/such/page",
        "/alerts/%00",
    ]
    async with staff_session(stack.base, stack.dsn) as http:
        for path in [*operator, f"/alerts/{public_id}"]:
            async with http.get(yarl_raw(stack.base + path)) as resp:
                h = resp.headers
                body = await resp.text()
            csp = h.get("Content-Security-Policy", "")
            for directive in ("default-src 'none'", "style-src 'self'", "frame-ancestors 'none'",
                              "base-uri 'none'", "form-action 'self'"):  # fmt: skip
                assert directive in csp, (path, csp)
            assert "unsafe-inline" not in csp and "<style>" not in body, "CSS comes from /style.css"
            assert h.get("X-Content-Type-Options") == "nosniff", path
            assert h.get("Referrer-Policy") == "no-referrer", path
            assert h.get("X-Frame-Options") == "DENY", path
            assert h.get("Server") == "numazu-dispatcher", (path, h.get("Server"))
            expected_cache = "no-cache" if path == f"/alerts/{public_id}" else "no-store"
            assert h.get("Cache-Control") == expected_cache, (path, h.get("Cache-Control"))
        async with http.get(f"{stack.base}/style.css") as resp:
            assert resp.status == 200 and resp.content_type == "text/css" and "font-family" in await resp.text()
            assert resp.headers.get("X-Content-Type-Options") == "nosniff"
        async with http.post(f"{stack.base}/hooks/broadcast", data=b"{}",
                             headers={"Content-Type": "application/json"}) as resp:  # fmt: skip
            assert resp.status == 401 and resp.headers.get("Cache-Control") == "no-store"
            assert resp.headers.get("Server") == "numazu-dispatcher"


async def _closed_within(reader: asyncio.StreamReader, limit: float) -> float | None:
    """Seconds until the server closed the connection, or None if it still held it after ``limit``."""
    started = time.monotonic()
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), timeout=max(0.01, limit - (time.monotonic() - started)))
            if not chunk:
                return time.monotonic() - started
    except (ConnectionError, OSError):
        return time.monotonic() - started
    except TimeoutError:
        return None


async def test_clients_trickling_headers_or_idle_are_disconnected_within_the_header_timeout(stack: Stack) -> None:
    host, port = stack.address

    async def trickle() -> float | None:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed: list[float | None] = []

        async def drip() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while not closed:
                    writer.write(b"X")  # one header byte at a time, never a whole line
                    await writer.drain()
                    await asyncio.sleep(0.2)

        dripping = asyncio.create_task(drip())
        closed.append(await _closed_within(reader, 6.0))
        dripping.cancel()
        writer.close()
        return None if closed[0] is None else time.monotonic() - started

    async def idle() -> float | None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            return await _closed_within(reader, 6.0)
        finally:
            writer.close()

    held = await asyncio.gather(*(trickle() for _ in range(20)), *(idle() for _ in range(5)))
    assert all(t is not None and t < HEADER_TIMEOUT + 1.5 for t in held), held
    # And a polite client on the same server is still served at once.
    async with aiohttp.ClientSession() as http, http.get(stack.base + "/healthz") as resp:
        assert resp.status == 200


async def _greedy_post(
    address: tuple[str, int], path: str, *, chunked: bool, total: int = 50_000_000
) -> tuple[bytes, int, float]:
    """POST a ``total``-byte body as fast as the server takes it; what came back, bytes sent, seconds."""
    reader, writer = await asyncio.open_connection(*address)
    length = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % total
    writer.write(
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" % path.encode()
        + b"X-Timestamp: 1\r\nX-Signature-256: sha256=00\r\n"
        + length
        + b"\r\n"
    )
    sent = 0
    chunk = b" " * 65536
    started = time.monotonic()

    async def pour() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionError, OSError):
            while sent < total:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                await writer.drain()
                sent += len(chunk)

    pouring = asyncio.create_task(pour())
    answer = b""
    with contextlib.suppress(ConnectionError, OSError, TimeoutError):
        while True:
            data = await asyncio.wait_for(reader.read(65536), timeout=15)
            if not data:
                break
            answer += data
    elapsed = time.monotonic() - started
    pouring.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pouring
    writer.close()
    return answer, sent, elapsed


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_the_limit_gets_413_and_the_server_stops_reading(stack: Stack, chunked: bool) -> None:
    # The webhook refuses a declared length over max_body_bytes before reading; a handler
    # reading with aiohttp's read() stops at client_max_size (2 MB) in a chunked body.
    if chunked:
        async with served(stack, web.post("/upload", public(read_all))) as address:
            answer, sent, elapsed = await _greedy_post(address, "/upload", chunked=True)
    else:
        answer, sent, elapsed = await _greedy_post(stack.address, "/hooks/broadcast", chunked=False)
        assert b"too_large" in answer
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"Connection: close" in answer
    # Closed at the limit: what was sent is the limit plus what the sockets buffer, not 50 MB.
    assert sent < 20_000_000, f"the server read {sent / 1e6:.0f} MB after the 413"
    assert elapsed < 5, elapsed


async def test_a_body_trickled_slower_than_the_body_timeout_is_cut_off(stack: Stack) -> None:
    async with served(stack, web.post("/upload", public(read_all))) as address:
        answer, elapsed = await _trickle_body(address)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 1.5, elapsed


async def _trickle_body(address: tuple[str, int]) -> tuple[bytes, float]:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
    started = time.monotonic()
    answer = b""

    async def drip() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            for _ in range(200):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.1)

    dripping = asyncio.create_task(drip())
    with contextlib.suppress(ConnectionError, OSError, TimeoutError):
        while True:
            data = await asyncio.wait_for(reader.read(65536), timeout=8)
            if not data:
                break
            answer += data
    elapsed = time.monotonic() - started
    dripping.cancel()
    writer.close()
    return answer, elapsed


# -- item 9: addresses in providers' errors ------------------------------------------------------


async def test_provider_errors_are_stored_with_addresses_masked(stack: Stack) -> None:
    stack.smtp.refuse(
        "yamada.hanako@example.jp", 550, "5.1.1 <yamada.hanako@example.jp>: Recipient address rejected: User unknown"
    )
    stack.telegram.migrate("200001", -1001234567890)
    alert_id = await one_alert(stack)
    # The migrated group's message is sent again to its supergroup (the third delivery).
    rows = await wait_settled(stack.dsn, expected=3)
    assert {(r["address"], r["state"]) for r in rows if r["state"] == "delivered"} == {("-1001234567890", "delivered")}
    assert [r["state"] for r in rows if r["address"] != "-1001234567890"] == ["failed", "failed"]
    stored = [r["last_error"] or "" for r in rows]
    stored += [r["detail"] for r in await stack.fetch("SELECT detail FROM delivery_events WHERE detail IS NOT NULL")]
    stored += [r["last_error"] or "" for r in await stack.fetch("SELECT last_error FROM channel_state")]
    assert any("smtp 550" in e and "ya…@example.jp" in e for e in stored), stored
    assert any("new_chat_id=…7890" in e for e in stored), stored
    for text in stored:
        assert "yamada.hanako" not in text and "1001234567890" not in text and "200001" not in text, text
    async with staff_session(stack.base, stack.dsn) as http:
        pages = []
        for path in (f"/alerts/{alert_id}/deliveries", f"/api/alerts/{alert_id}/deliveries", "/api/alerts"):
            async with http.get(stack.base + path) as resp:
                pages.append(await resp.text())
        for r in rows:
            async with http.get(f"{stack.base}/deliveries/{r['id']}") as resp:
                pages.append(await resp.text())
    for page in pages:
        assert "yamada.hanako" not in page and "1001234567890" not in page and ">200001<" not in page


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
            async with staff_session(service.web_url, with_database(base, "outage_test")) as http:
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


async def test_a_malformed_request_is_a_400_logged_in_one_line_without_a_traceback(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # Another test turns aiohttp.server down to CRITICAL for good: look at it as it is by default.
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    host, port = stack.address
    too_long = b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    for request in (too_long, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(65536), timeout=5)
        writer.close()
        assert answer.split(b" ", 2)[1] == b"400", answer[:100]
    records = [r for r in caplog.records if r.name.startswith("aiohttp")]
    assert [r.levelname for r in records] == ["WARNING", "WARNING"], [r.getMessage() for r in records]
    assert all(r.exc_info is None and "bad HTTP request" in r.getMessage() for r in records)
