"""The staff console against the real daemon: logins, roles, CSRF, the two-person path, the audit log.

The daemon runs in-process (its aiohttp server on a free port, a real PostgreSQL, the
Telegram Bot API and SMTP stand-ins); people are aiohttp clients logged in through the
real ``/login`` (tests/staffing.py). Residents follow districts of the district layer;
one of each channel is a test recipient, who alone gets exercises.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from dispatcher.app import Service
from dispatcher.settings import load
from dispatcher.standins.smtp import SmtpStandIn
from dispatcher.standins.telegram_api import TelegramStandIn
from dispatcher.store.subscribers import subscribe
from sources.broadcast.examples import json_body, signed_headers
from tests.integration.test_path import wait_settled
from tests.staffing import PASSWORD, create_staff, csrf_token, log_in, page_token, staff_session

JST = timezone(timedelta(hours=9))
SECRET = "console-test-secret-0123456789abcdef01"
CONFIG = """
[service]
state_dir = "{state}"
public_url = "{public_url}"
[web]
port = 0
[jma]
enabled = false
[delivery]
poll_interval = 0.2
[console]
login_failure_delay_seconds = 0
login_failures_per_account = 3
login_failures_per_address = 50
[broadcast]
enabled = true
secret_env = "CONSOLE_SECRET"
hold_emergency = true
[channels.telegram]
enabled = true
token_env = "CONSOLE_TOKEN"
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

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()


async def start_stack(database: str, tmp_path: Path, public_url: str = "http://127.0.0.1:8080") -> Stack:
    telegram, smtp = TelegramStandIn(), SmtpStandIn()
    await telegram.start()
    await smtp.start()
    cfg = tmp_path / "dispatcher.toml"
    cfg.write_text(CONFIG.format(state=tmp_path, telegram=telegram.base_url, smtp_host=smtp.host,
                                 smtp_port=smtp.port, public_url=public_url))  # fmt: skip
    conn = await asyncpg.connect(database)
    try:
        await subscribe(conn, channel="telegram", address="300001", areas=["numazu-heda"])
        await subscribe(conn, channel="email", address="nishiura@example.jp", areas=["numazu-nishiura"])
        await subscribe(conn, channel="telegram", address="300002", areas=["numazu-ooka"], language="en")
        await subscribe(conn, channel="telegram", address="900001", areas=["numazu-heda"], test_recipient=True)
    finally:
        await conn.close()
    service = Service(load(cfg, env={"CONSOLE_SECRET": SECRET, "CONSOLE_TOKEN": "42:TEST"}), dsn=database)
    await service.start()
    return Stack(database, service, telegram, smtp)


@pytest.fixture
async def stack(database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    s = await start_stack(database, tmp_path)
    try:
        yield s
    finally:
        await s.service.stop()
        await s.telegram.stop()
        await s.smtp.stop()


def expiry(hours: float = 6) -> str:
    return (datetime.now(JST) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M")


async def compose(http: aiohttp.ClientSession, base: str, *, prefix: str = "/console", kind: str = "避難指示",
                  areas: tuple[str, ...] = ("numazu-heda", "numazu-nishiura"), action: str = "submit",
                  **fields: str) -> int:  # fmt: skip
    """Fill in the compose form as the page prefills it, choose ``areas``, press ``action``; the message id."""
    async with http.get(f"{base}{prefix}/new", params={"kind": kind}) as resp:
        assert resp.status == 200, await resp.text()
        html = await resp.text()
    form: list[tuple[str, str]] = [("csrf_token", csrf_token(html)), ("kind", kind), ("expires", expiry())]
    for name in re.findall(r'name="(prefill_(?:headline|text)_[a-z-]+)"', html):
        value = re.search(rf'name="{name}" value="([^"]*)"', html)
        form.append((name, value.group(1) if value else ""))
    form += [("area", a) for a in areas]
    # The texts as prefilled for no district: they follow the districts chosen (read_draft).
    for lang in ("ja", "ja-easy", "en"):
        h = re.search(rf'name="prefill_headline_{lang}" value="([^"]*)"', html)
        t = re.search(rf'name="prefill_text_{lang}" value="([^"]*)"', html)
        form.append((f"headline_{lang}", fields.get(f"headline_{lang}", _unescape(h.group(1) if h else ""))))
        form.append((f"text_{lang}", fields.get(f"text_{lang}", _unescape(t.group(1) if t else ""))))
    form = [(k, _unescape(v)) if k.startswith("prefill_") else (k, v) for k, v in form]
    form.append(("action", action))
    async with http.post(f"{base}{prefix}/new", data=form, allow_redirects=False) as resp:
        assert resp.status == 303, (resp.status, (await resp.text())[:2000])
        return int(resp.headers["Location"].rsplit("/", 1)[1])


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


async def act(http: aiohttp.ClientSession, base: str, message_id: int, action: str, *, prefix: str = "/console",
              **fields: str) -> tuple[int, str]:  # fmt: skip
    """Press a button on a message's page; (status after redirects, the page's error, if any)."""
    token = await page_token(http, f"{base}{prefix}/messages/{message_id}")
    async with http.post(f"{base}{prefix}/messages/{message_id}/{action}", data={"csrf_token": token, **fields}) as r:
        text = await r.text()
    error = re.search(r'<div class="banner" role="alert"><b>(.*?)</b>', text, re.S)
    return r.status, error.group(1) if error else ""


async def state_of(stack: Stack, message_id: int) -> str:
    [row] = await stack.fetch("SELECT state::text FROM console_messages WHERE id = $1", message_id)
    return str(row["state"])


# -- everything operational is behind the login ---------------------------------------------------


async def test_anonymous_requests_are_sent_to_login_or_refused(stack: Stack) -> None:
    status, answer = await _post_broadcast(stack, "ANON-1")
    alert_id = answer["alert_id"]
    assert stack.service.pipeline is not None
    await stack.service.pipeline.release(alert_id)  # held here; residents see it once released
    [row] = await stack.fetch("SELECT public_id FROM alerts WHERE id = $1", alert_id)
    async with aiohttp.ClientSession() as http:
        for path in ("/", f"/alerts/{alert_id}/deliveries", "/deliveries/1", "/console", "/exercise",
                     "/console/new", "/staff", "/audit"):  # fmt: skip
            async with http.get(stack.base + path, allow_redirects=False) as resp:
                assert resp.status == 303, (path, resp.status)
                assert resp.headers["Location"].startswith("/login?next="), path
        for path in ("/api/alerts", f"/api/alerts/{alert_id}/deliveries", "/api/deliveries/1", "/audit.csv"):
            async with http.get(stack.base + path, allow_redirects=False) as resp:
                assert resp.status == 401, (path, resp.status)
                assert (await resp.json())["error"] == "unauthenticated"
        async with http.post(stack.base + "/console/new", data={"kind": "避難指示"}, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"].startswith("/login")
        # What stays public.
        for path in (f"/alerts/{row['public_id']}", "/healthz", "/style.css", "/static/console.js", "/login"):
            async with http.get(stack.base + path, allow_redirects=False) as resp:
                assert resp.status == 200, (path, resp.status)
    assert status == 202


async def _post_broadcast(stack: Stack, ident: str, groups: tuple[str, ...] = ("heda",)) -> tuple[int, Any]:
    body = json_body(ident, "こちらは、防災ぬまづです。戸田地区に避難指示を発令しました。", list(groups),
                     aired_at=datetime.now(JST).replace(microsecond=0))  # fmt: skip
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            stack.base + "/hooks/broadcast", data=body, headers=signed_headers(SECRET, body, "application/json")
        ) as r,
    ):
        return r.status, await r.json()


async def test_login_form_session_cookie_and_logout(stack: Stack) -> None:
    await create_staff(stack.dsn, "yamada", "viewer")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(stack.base + "/login") as resp:
            html = await resp.text()
        for field in ('name="username"', 'name="password"', 'name="csrf_token"'):
            assert field in html
        answer = await log_in(http, stack.base, "yamada")
        assert answer.status == 303 and answer.headers["Location"] == "/"
        cookie = next(v for k, v in answer.headers.items() if k == "Set-Cookie" and v.startswith("session="))
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        async with http.get(stack.base + "/api/alerts") as resp:
            assert resp.status == 200
        token = await page_token(http, stack.base + "/")
        async with http.post(stack.base + "/logout", data={"csrf_token": token}, allow_redirects=False) as resp:
            assert resp.status == 303
        async with http.get(stack.base + "/api/alerts") as resp:
            assert resp.status == 401, "the session row was revoked"
    [row] = await stack.fetch("SELECT count(*) AS n FROM staff_sessions WHERE revoked_at IS NOT NULL")
    assert row["n"] == 1


async def test_a_new_session_id_at_login_and_a_login_without_its_token_is_refused(stack: Stack) -> None:
    await create_staff(stack.dsn, "suzuki", "viewer")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(stack.base + "/login", data={"username": "suzuki", "password": PASSWORD},
                             allow_redirects=False) as resp:  # fmt: skip
            assert resp.status == 403, "no login token: refused"
        await log_in(http, stack.base, "suzuki")
        first = {c.key: c.value for c in http.cookie_jar}["session"]
        await log_in(http, stack.base, "suzuki")
        second = {c.key: c.value for c in http.cookie_jar}["session"]
    assert first != second
    rows = await stack.fetch("SELECT revoked_at FROM staff_sessions ORDER BY created_at")
    assert len(rows) == 2 and rows[0]["revoked_at"] is not None and rows[1]["revoked_at"] is None


async def test_secure_cookies_when_the_public_url_is_https(database: str, tmp_path: Path) -> None:
    stack = await start_stack(database, tmp_path, public_url="https://bousai.city.numazu.example")
    try:
        await create_staff(stack.dsn, "tanaka", "viewer")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(stack.base + "/login") as resp:
                token = csrf_token(await resp.text())
                login_cookie = resp.headers["Set-Cookie"]
            assert login_cookie.startswith("__Host-login_csrf=") and "Secure" in login_cookie
            fields = {"username": "tanaka", "password": PASSWORD, "csrf_token": token}
            async with http.post(stack.base + "/login", data=fields, allow_redirects=False,
                                 cookies={"__Host-login_csrf": token}) as resp:  # fmt: skip
                assert resp.status == 303
                cookies = [v for k, v in resp.headers.items() if k == "Set-Cookie"]
        session = next(c for c in cookies if c.startswith("__Host-session="))
        assert "Secure" in session and "HttpOnly" in session and "SameSite=Strict" in session and "Path=/" in session
    finally:
        await stack.service.stop()
        await stack.telegram.stop()
        await stack.smtp.stop()


async def test_sessions_expire_when_idle_and_after_twelve_hours(stack: Stack) -> None:
    async with staff_session(stack.base, stack.dsn, "idle", "viewer") as http:
        async with http.get(stack.base + "/api/alerts") as resp:
            assert resp.status == 200
        await stack.fetch("UPDATE staff_sessions SET last_seen = now() - interval '31 minutes'")
        async with http.get(stack.base + "/api/alerts") as resp:
            assert resp.status == 401, "idle for more than 30 minutes"
    async with staff_session(stack.base, stack.dsn, "long", "viewer") as http:
        # Busy all day: the idle timer is fresh, but the login is 12 hours old.
        await stack.fetch("UPDATE staff_sessions SET created_at = now() - interval '12 hours 1 minute'"
                          " WHERE revoked_at IS NULL")  # fmt: skip
        async with http.get(stack.base + "/", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"].startswith("/login")


async def test_failed_logins_lock_the_account_then_the_address(stack: Stack) -> None:
    await create_staff(stack.dsn, "sato", "viewer")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        statuses = [(await log_in(http, stack.base, "sato", "wrong password!!")).status for _ in range(3)]
        assert statuses == [401, 401, 401]
        # Locked now: even the right password is refused, for a while.
        assert (await log_in(http, stack.base, "sato")).status == 429
        # Other accounts from this address are not locked (its limit is 50 here).
        await create_staff(stack.dsn, "kato", "viewer")
        assert (await log_in(http, stack.base, "kato")).status == 303
    await stack.fetch("UPDATE login_throttle SET locked_until = now() - interval '1 second'")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        assert (await log_in(http, stack.base, "sato")).status == 303, "the lock ends"
    actions = [r["action"] for r in await stack.fetch("SELECT action FROM audit_log WHERE target = 'user:sato'")]
    assert actions.count("login.failed") == 3 and "login.locked" in actions and actions[-1] == "login"


# -- CSRF and roles ------------------------------------------------------------------------------------


async def test_a_form_without_a_valid_csrf_token_is_refused(stack: Stack) -> None:
    async with staff_session(stack.base, stack.dsn, "author1", "author") as http:
        message_id = await compose(http, stack.base, action="save")
        for fields in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
            async with http.post(f"{stack.base}/console/messages/{message_id}/submit", data=fields) as resp:
                assert resp.status == 403, fields
        async with http.post(f"{stack.base}/console/preview", data={"kind": "避難指示"}) as resp:
            assert resp.status == 403
        async with http.post(f"{stack.base}/logout", data={}) as resp:
            assert resp.status == 403
    assert await state_of(stack, message_id) == "draft", "nothing happened"


async def test_roles_bound_what_each_may_do(stack: Stack) -> None:
    async with staff_session(stack.base, stack.dsn, "viewer1", "viewer") as http:
        for path in ("/console/new", "/staff", "/audit.csv"):
            async with http.get(stack.base + path) as resp:
                assert resp.status == 403, path
        async with http.get(stack.base + "/console") as resp:
            assert resp.status == 200 and "新規作成" not in await resp.text()
    async with staff_session(stack.base, stack.dsn, "author2", "author") as http:
        message_id = await compose(http, stack.base)
        status, _ = await act(http, stack.base, message_id, "approve")
        assert status == 403, "an author cannot approve, their own or anyone's"
    assert await state_of(stack, message_id) == "submitted"


# -- the two-person path ---------------------------------------------------------------------------------


async def test_nobody_approves_what_they_wrote_or_submitted(stack: Stack) -> None:
    async with staff_session(stack.base, stack.dsn, "approver1", "approver") as first:
        mine = await compose(first, stack.base)
        status, error = await act(first, stack.base, mine, "approve")
        assert "two-person rule" in error, (status, error)
        async with first.get(f"{stack.base}/console/messages/{mine}") as resp:
            page = await resp.text()
        assert 'id="approve"' not in page and "別の承認者が判断します" in page
    assert await state_of(stack, mine) == "submitted"
    # An approver who edited (or submitted) someone else's draft may not approve it either.
    async with staff_session(stack.base, stack.dsn, "author3", "author") as author:
        theirs = await compose(author, stack.base, action="save")
    async with staff_session(stack.base, stack.dsn, "approver2", "approver") as second:
        assert (await act(second, stack.base, theirs, "submit"))[0] == 200
        _status, error = await act(second, stack.base, theirs, "approve")
        assert "two-person rule" in error
    # The database refuses it too, whatever the code did.
    with pytest.raises(asyncpg.CheckViolationError):
        await stack.fetch("UPDATE console_messages SET state = 'approved', decided_by = created_by WHERE id = $1",
                          mine)  # fmt: skip
    # Someone else approves: it is sent.
    async with staff_session(stack.base, stack.dsn, "approver3", "approver") as third:
        assert (await act(third, stack.base, mine, "approve")) == (200, "")
    assert await state_of(stack, mine) == "sent"
    rows = await wait_settled(stack.dsn, expected=3)
    assert {(r["channel"], r["address"]) for r in rows} == {("telegram", "300001"), ("email", "nishiura@example.jp"),
                                                          ("telegram", "900001")}  # fmt: skip


async def test_reject_and_return_carry_a_reason_the_author_sees(stack: Stack) -> None:
    async with staff_session(stack.base, stack.dsn, "author4", "author") as author:
        first = await compose(author, stack.base)
        second = await compose(author, stack.base, kind="給水")
        async with staff_session(stack.base, stack.dsn, "approver4", "approver") as approver:
            assert (await act(approver, stack.base, first, "return"))[1] == "say why: the author reads the reason"
            await act(approver, stack.base, first, "return", reason="西浦ではなく内浦です")
            await act(approver, stack.base, second, "reject", reason="断水は解消済み")
        async with author.get(f"{stack.base}/console/messages/{first}") as resp:
            page = await resp.text()
        assert "差し戻しの理由" in page and "西浦ではなく内浦です" in page and "/edit" in page
        async with author.get(f"{stack.base}/console") as resp:
            assert "断水は解消済み" in await resp.text()
        # Returned: edited and submitted again.
        assert (await act(author, stack.base, first, "submit"))[0] == 200
    assert await state_of(stack, first) == "submitted" and await state_of(stack, second) == "rejected"


async def test_cancel_sends_the_retraction_to_everyone_it_reached(stack: Stack) -> None:
    async with staff_session(stack.base, stack.dsn, "author5", "author") as author:
        message_id = await compose(author, stack.base)
    async with staff_session(stack.base, stack.dsn, "approver5", "approver") as approver:
        await act(approver, stack.base, message_id, "approve")
        await wait_settled(stack.dsn, expected=3)
        async with approver.get(f"{stack.base}/console/messages/{message_id}") as resp:
            page = await resp.text()
        # The prepared 取消 (and 誤報): one click, its text already written.
        headline = re.search(r'name="headline_ja" value="([^"]*)"', page)
        assert headline is not None and "【取消】避難指示" in headline.group(1)
        fields = {"reason": "誤報"}
        for lang in ("ja", "ja-easy", "en"):
            fields[f"headline_{lang}"] = f"【誤報】{lang}"
            fields[f"text_{lang}"] = "この情報は誤りです。"
        assert (await act(approver, stack.base, message_id, "cancel", **fields)) == (200, "")
    rows = await wait_settled(stack.dsn, expected=6)
    assert sum(r["state"] == "delivered" for r in rows) == 6
    retraction = [m for m in stack.telegram.messages if m.chat_id == "300001"][-1]
    assert "【誤報】ja" in retraction.text and "この情報は誤りです" in retraction.text
    [alert] = await stack.fetch("SELECT msg_type::text, refs, state::text FROM alerts WHERE identifier LIKE '%cancel'")
    assert alert["msg_type"] == "cancel" and alert["refs"] == [f"console-{message_id}"]
    [original] = await stack.fetch("SELECT state::text FROM alerts WHERE identifier = $1", f"console-{message_id}")
    assert original["state"] == "cancelled"
    assert await state_of(stack, message_id) == "cancelled"


async def test_an_update_replaces_the_alert_it_names(stack: Stack) -> None:
    async with staff_session(stack.base, stack.dsn, "author6", "author") as author:
        first = await compose(author, stack.base, areas=("numazu-heda",))
        async with staff_session(stack.base, stack.dsn, "approver6", "approver") as approver:
            await act(approver, stack.base, first, "approve")
            await wait_settled(stack.dsn, expected=2)
            async with author.get(f"{stack.base}/console/new", params={"replaces": str(first)}) as resp:
                html = await resp.text()
            assert f'name="replaces" value="{first}"' in html
            token = csrf_token(html)
            form = {"csrf_token": token, "kind": "緊急安全確保", "replaces": str(first), "expires": expiry(),
                    "area": "numazu-heda", "headline_ja": "【警戒レベル5】戸田に緊急安全確保",
                    "text_ja": "命を守る行動をとってください。", "action": "submit"}  # fmt: skip
            async with author.post(f"{stack.base}/console/new", data=form, allow_redirects=False) as resp:
                assert resp.status == 303, await resp.text()
                update = int(resp.headers["Location"].rsplit("/", 1)[1])
            assert (await act(approver, stack.base, update, "approve")) == (200, "")
    await wait_settled(stack.dsn, expected=4)
    rows = await stack.fetch("SELECT identifier, msg_type::text, refs, state::text FROM alerts ORDER BY id")
    assert [(r["msg_type"], r["state"]) for r in rows] == [("alert", "superseded"), ("update", "active")]
    assert rows[1]["refs"] == [f"console-{first}"]
    assert await state_of(stack, first) == "superseded"


async def test_exercise_mode_is_another_place_and_reaches_test_recipients_only(stack: Stack) -> None:
    async with staff_session(stack.base, stack.dsn, "author7", "author") as author:
        drill = await compose(author, stack.base, prefix="/exercise")
        async with author.get(f"{stack.base}/exercise/messages/{drill}") as resp:
            page = await resp.text()
        assert 'class="exercise"' in page and "訓練 EXERCISE" in page
        async with author.get(f"{stack.base}/console/messages/{drill}") as resp:
            assert resp.status == 404, "an exercise is not reachable from the live console"
    async with staff_session(stack.base, stack.dsn, "approver7", "approver") as approver:
        async with approver.get(f"{stack.base}/exercise/messages/{drill}") as resp:
            page = await resp.text()
        assert "訓練として承認・配信" in page and "本番配信" not in page
        assert (await act(approver, stack.base, drill, "approve", prefix="/exercise")) == (200, "")
    rows = await wait_settled(stack.dsn, expected=1)
    assert [(r["address"], r["state"]) for r in rows] == [("900001", "delivered")]
    [msg] = stack.telegram.messages
    assert msg.text.startswith("【訓練】")
    [alert] = await stack.fetch("SELECT status::text FROM alerts")
    assert alert["status"] == "exercise"


async def test_expiry_must_be_ahead_and_within_a_day(stack: Stack) -> None:
    async with staff_session(stack.base, stack.dsn, "author8", "author") as http:
        async with http.get(f"{stack.base}/console/new", params={"kind": "避難指示"}) as resp:
            token = csrf_token(await resp.text())
        base = {"csrf_token": token, "kind": "避難指示", "area": "numazu-heda", "headline_ja": "見出し",
                "text_ja": "本文", "action": "submit"}  # fmt: skip
        for when, problem in ((expiry(-1), "in the past"), (expiry(25), "at most 24 hours"), ("tomorrow", "not a")):
            async with http.post(f"{stack.base}/console/new", data={**base, "expires": when}) as resp:
                assert resp.status == 422 and problem in await resp.text(), when
    assert await stack.fetch("SELECT 1 FROM console_messages") == []


async def test_previews_render_through_each_channel_with_length_counters(stack: Stack) -> None:
    async with staff_session(stack.base, stack.dsn, "author9", "author") as http:
        async with http.get(f"{stack.base}/console/new", params={"kind": "避難指示"}) as resp:
            token = csrf_token(await resp.text())
        form = [("csrf_token", token), ("kind", "避難指示"), ("area", "numazu-heda"), ("area", "numazu-nishiura"),
                ("expires", expiry())]  # fmt: skip
        async with http.post(f"{stack.base}/console/preview", data=form, headers={"X-CSRF-Token": token}) as resp:
            answer = await resp.json()
    # In the district layer's order, whatever order they were clicked in.
    assert answer["areas"] == "西浦、戸田"
    assert answer["texts"]["ja"]["headline"] == "【警戒レベル4】西浦、戸田に避難指示"
    assert answer["texts"]["en"]["headline"] == "Evacuation order (Alert Level 4): Nishiura, Heda"
    html = answer["previews_html"]
    for counter in ("/ 4096 characters", "x ", "/ 280 weighted characters", "/ 300 graphemes", "/ 5000 UTF-16"):
        assert counter in html, counter
    assert "<b>telegram</b> · en" in html and "<b>email</b> · ja-easy" in html


# -- held broadcasts ----------------------------------------------------------------------------------------


async def test_a_held_broadcast_is_corrected_and_released_from_the_queue(stack: Stack) -> None:
    status, answer = await _post_broadcast(stack, "HELD-1", groups=("heda",))
    assert status == 202 and answer["held"] is True
    alert_id = answer["alert_id"]
    async with staff_session(stack.base, stack.dsn, "approver8", "approver") as http:
        async with http.get(f"{stack.base}/console") as resp:
            queue = await resp.text()
        assert f"/console/held/{alert_id}" in queue and "correct the loudspeaker groups, then approve" in queue
        token = await page_token(http, f"{stack.base}/console/held/{alert_id}")
        form = [("csrf_token", token), ("area", "numazu-heda"), ("area", "numazu-nishiura")]
        async with http.post(f"{stack.base}/console/held/{alert_id}/approve", data=form) as resp:
            assert resp.status == 200
    rows = await wait_settled(stack.dsn, expected=3)
    assert {r["address"] for r in rows} == {"300001", "nishiura@example.jp", "900001"}
    [alert] = await stack.fetch("SELECT state::text, headline FROM alerts WHERE id = $1", alert_id)
    assert alert["state"] == "active" and alert["headline"] == "西浦、戸田への緊急放送"


# -- the audit log ------------------------------------------------------------------------------------------


async def test_every_action_is_in_the_append_only_audit_log(stack: Stack) -> None:
    async with staff_session(stack.base, stack.dsn, "author10", "author") as author:
        message_id = await compose(author, stack.base, action="save")
        token = await page_token(author, f"{stack.base}/console/messages/{message_id}/edit")
        async with author.get(f"{stack.base}/console/messages/{message_id}/edit") as resp:
            assert resp.status == 200
        form = {
            "csrf_token": token,
            "kind": "避難指示",
            "area": "numazu-heda",
            "expires": expiry(),
            "headline_ja": "【警戒レベル4】戸田に避難指示",
            "text_ja": "避難してください。",
            "action": "save",
        }
        async with author.post(f"{stack.base}/console/messages/{message_id}/edit", data=form) as resp:
            assert resp.status == 200
        await act(author, stack.base, message_id, "submit")
    async with staff_session(stack.base, stack.dsn, "admin1", "admin") as admin:
        await act(admin, stack.base, message_id, "approve")
        await wait_settled(stack.dsn, expected=2)
        await act(
            admin, stack.base, message_id, "cancel", reason="取消", headline_ja="【取消】", text_ja="取り消します"
        )
        token = await page_token(admin, f"{stack.base}/staff")
        new = {"csrf_token": token, "username": "newcomer", "role": "viewer", "password": "a long password 42",
               "password2": "a long password 42"}  # fmt: skip
        async with admin.post(f"{stack.base}/staff", data=new) as resp:
            assert "account newcomer (viewer) added" in await resp.text()
        async with admin.post(f"{stack.base}/staff/newcomer/disable", data={"csrf_token": token}) as resp:
            assert resp.status == 200
        async with admin.post(f"{stack.base}/channels/email/pause", data={"csrf_token": token, "reason": "点検"}):
            pass
        async with admin.post(f"{stack.base}/channels/email/resume", data={"csrf_token": token}):
            pass
        async with admin.post(f"{stack.base}/logout", data={"csrf_token": token}):
            pass
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await log_in(http, stack.base, "admin1", "not the password")
    rows = await stack.fetch("SELECT actor, action, target, address, before, after FROM audit_log ORDER BY id")
    actions = [r["action"] for r in rows]
    for expected in ("login", "draft.create", "draft.edit", "draft.submit", "draft.approve", "alert.send",
                     "alert.cancel", "user.add", "user.disable", "channel.pause", "channel.resume", "logout",
                     "login.failed"):  # fmt: skip
        assert expected in actions, (expected, actions)
    edit = next(r for r in rows if r["action"] == "draft.edit")
    assert edit["actor"] == "author10" and edit["address"] == "127.0.0.1" and edit["target"] == f"message:{message_id}"
    before, after = json.loads(edit["before"]), json.loads(edit["after"])
    assert before["areas"] == ["numazu-nishiura", "numazu-heda"] and after["areas"] == ["numazu-heda"]
    for statement in ("UPDATE audit_log SET actor = 'nobody'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await stack.fetch(statement)
    # Admins export it.
    async with (
        staff_session(stack.base, stack.dsn, "admin2", "admin") as admin,
        admin.get(f"{stack.base}/audit.csv") as resp,
    ):
        assert resp.status == 200 and resp.content_type == "text/csv"
        text = await resp.text()
    assert text.splitlines()[0] == "id,at,actor,role,action,target,address,before,after"
    assert "alert.cancel" in text and "author10" in text


async def test_the_cli_manages_accounts_and_exports_the_audit_log(stack: Stack, tmp_path: Path) -> None:
    import os
    import sys

    env = {**os.environ, "DATABASE_URL": stack.dsn}

    async def run(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "dispatcher", *args, env=env,
                                                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=60)
        return int(proc.returncode or 0), out.decode(), err.decode()

    code, out, err = await run(
        "user", "add", "chief", "--role", "admin", stdin=b"first password 123\nfirst password 123\n"
    )
    assert code == 0, err
    code, _out, err = await run("user", "add", "typo", "--role", "author", stdin=b"a password of 12\nanother one 123\n")
    assert code == 2 and "differ" in err
    code, _out, err = await run("user", "add", "short", "--role", "author", stdin=b"short\nshort\n")
    assert code == 1 and "at least 12" in err
    secret = tmp_path / "pw"
    secret.write_text("second password 456\n")
    assert (await run("user", "passwd", "chief", "--password-file", str(secret)))[0] == 0
    code, out, _ = await run("user", "list", "--json")
    [chief] = json.loads(out)
    assert chief["username"] == "chief" and chief["role"] == "admin" and "password_hash" not in chief
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        assert (await log_in(http, stack.base, "chief", "second password 456")).status == 303
    assert (await run("user", "disable", "chief"))[0] == 0
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        assert (await log_in(http, stack.base, "chief", "second password 456")).status == 401
    assert (await run("channel", "pause", "email", "--reason", "点検"))[0] == 0
    code, out, _ = await run("audit", "--csv", "--since", "2000-01-01T00:00")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("id,at,actor") and any(",user.add,user:chief," in line for line in lines)
    assert any(",channel.pause,channel:email," in line and "cli:" in line for line in lines)
    assert any(",user.passwd," in line for line in lines) and any(",user.disable," in line for line in lines)
