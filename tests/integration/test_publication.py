"""The daemon's publication end to end: e-mail opt-in and one-click unsubscribe, the social channels, site and feeds.

The daemon runs in-process against a real PostgreSQL, the SMTP stand-in (aiosmtpd) and
the Mastodon, X and Bluesky stand-ins; the public site is read over HTTP and from its
static copy on disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from lxml import etree

from dispatcher.app import Service
from dispatcher.model import MsgType
from dispatcher.settings import load
from dispatcher.standins.bluesky import BlueskyStandIn
from dispatcher.standins.mastodon import MastodonStandIn
from dispatcher.standins.smtp import SmtpStandIn
from dispatcher.standins.x_api import OAuth1Credentials, XStandIn
from tests.integration.test_path import wait_settled
from tests.samples import make_alert, tsunami_warning

CONFIG = """
[service]
state_dir = "{state}"
public_url = "http://127.0.0.1:{port}"
[web]
port = {port}
[jma]
enabled = false
[delivery]
poll_interval = 0.2
[publication]
static_dir = "{state}/site"
requests_per_address = 2
[channels.email]
enabled = true
host = "127.0.0.1"
port = {smtp_port}
[channels.mastodon]
enabled = true
base_url = "{mastodon}"
token_env = "MASTODON_TOKEN"
[channels.x]
enabled = true
base_url = "{x}"
consumer_key = "ck"
consumer_secret_env = "X_SECRET"
access_token = "at"
access_token_secret_env = "X_TOKEN_SECRET"
[channels.bluesky]
enabled = true
base_url = "{bluesky}"
handle = "numazu.bsky.social"
password_env = "BSKY_PASSWORD"
"""


@dataclasses.dataclass
class Stack:
    dsn: str
    service: Service
    smtp: SmtpStandIn
    mastodon: MastodonStandIn
    x: XStandIn
    bluesky: BlueskyStandIn
    state: Path

    @property
    def url(self) -> str:
        assert self.service.web_url
        return self.service.web_url


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def stack(database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    smtp, mastodon = SmtpStandIn(), MastodonStandIn("tok")
    x, bluesky = XStandIn(OAuth1Credentials("ck", "cs", "at", "ats")), BlueskyStandIn("numazu.bsky.social", "pw")
    await smtp.start()
    for s in (mastodon, x, bluesky):
        await s.start()
    cfg = tmp_path / "d.toml"
    port = free_port()
    cfg.write_text(
        CONFIG.format(state=tmp_path, port=port, smtp_port=smtp.port, mastodon=mastodon.base_url, x=x.base_url,
                      bluesky=bluesky.base_url)
    )  # fmt: skip
    env = {
        "DATABASE_URL": database,
        "MASTODON_TOKEN": "tok",
        "X_SECRET": "cs",
        "X_TOKEN_SECRET": "ats",
        "BSKY_PASSWORD": "pw",
    }
    service = Service(load(cfg, env=env), dsn=database)
    await service.start()
    try:
        yield Stack(database, service, smtp, mastodon, x, bluesky, tmp_path)
    finally:
        await service.stop()
        await smtp.stop()
        for s in (mastodon, x, bluesky):
            await s.stop()


async def wait_for(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check() if asyncio.iscoroutinefunction(check) else check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def link_in(text: str, path: str) -> str:
    m = re.search(r"https?://\S+" + re.escape(path) + r"\S*", text)
    assert m, text
    return m.group()


async def test_email_double_opt_in_delivery_and_one_click_unsubscribe(stack: Stack) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(stack.url + "/subscribe") as r:
            assert r.status == 200
            form = await r.text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf
        data = {
            "csrf": csrf.group(1),
            "email": "yamada@example.jp",
            "area": ["戸田", "2220300"],
            "language": "ja",
            "level": "",
        }
        # Without the cookie's twin the form is refused.
        async with aiohttp.ClientSession() as stranger, stranger.post(stack.url + "/subscribe", data=data) as r:
            assert r.status == 403
        async with http.post(stack.url + "/subscribe", data=data) as r:
            assert r.status == 202, await r.text()
        mail = (await wait_for(lambda: stack.smtp.messages))[0].message
        assert mail["To"] == "yamada@example.jp" and "確認" in mail["Subject"]
        body = mail.get_body(("plain",)).get_content()
        assert mail.get_body(("html",)) is not None
        confirm = link_in(body, "/subscribe/confirm")
        conn = await asyncpg.connect(stack.dsn)
        try:
            # Nothing is subscribed before the link is followed.
            assert await conn.fetchval("SELECT count(*) FROM subscriptions WHERE channel = 'email'") == 0
            async with http.get(confirm) as r:
                assert r.status == 200
            async with http.get(confirm) as r:  # once only
                assert r.status == 410
            row = await conn.fetchrow("SELECT * FROM subscriptions WHERE address = 'yamada@example.jp'")
            assert row["active"] and set(row["areas"]) == {"numazu-heda", "2220300"}
        finally:
            await conn.close()
        # Over the per-address limit (2 an hour), a third request is refused.
        for expected in (202, 429):
            async with http.post(stack.url + "/subscribe", data=data) as r:
                assert r.status == expected
        stack.smtp.reset()

        assert stack.service.context is not None
        await stack.service.context.emit(tsunami_warning(public_id=""))
        await wait_settled(stack.dsn, expected=4)
        alert_mail = next(m.message for m in stack.smtp.messages if "津波" in str(m.message["Subject"]))
        unsubscribe = str(alert_mail["List-Unsubscribe"]).strip().strip("<>")
        assert unsubscribe.startswith(stack.url + "/unsubscribe?t=")
        assert alert_mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text = alert_mail.get_body(("plain",)).get_content()
        assert unsubscribe in text and "/subscription?t=" in text
        html = alert_mail.get_body(("html",)).get_content()
        assert 'lang="ja"' in html and "/unsubscribe?t=" in html
        # A guessed token does nothing; the GET shows a button and unsubscribes nobody.
        async with http.post(stack.url + "/unsubscribe?t=1.forged", data="List-Unsubscribe=One-Click") as r:
            assert r.status == 404
        async with http.get(unsubscribe) as r:
            assert r.status == 200
        # RFC 8058: the mail provider POSTs without cookies.
        async with (
            aiohttp.ClientSession() as provider,
            provider.post(
                unsubscribe,
                data="List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ) as r,
        ):
            assert r.status == 200
    conn = await asyncpg.connect(stack.dsn)
    try:
        assert not await conn.fetchval("SELECT active FROM subscriptions WHERE address = 'yamada@example.jp'")
    finally:
        await conn.close()


async def test_social_posts_thread_and_retract_and_the_site_follows(stack: Stack) -> None:
    ctx = stack.service.context
    assert ctx is not None
    first = await ctx.emit(tsunami_warning(public_id=""))
    await wait_settled(stack.dsn, expected=3)
    assert len(stack.mastodon.posted) == 1 and len(stack.x.live) == 1 and len(stack.bluesky.posts) == 1
    site = stack.state / "site"
    pid = first.public_id
    assert pid
    await wait_for(lambda: (site / "alerts" / pid / "index.html").exists())
    page = (site / "alerts" / pid / "index.html").read_text()
    assert "沼津市では" in page and "津波警報" in page
    cancel = replace(
        tsunami_warning(), identifier="cancel-1", msg_type=MsgType.CANCEL, references=(tsunami_warning().identifier,),
        event="津波警報解除", headline="津波警報を解除しました。", public_id="",
    )  # fmt: skip
    second = await ctx.emit(cancel)
    assert second.replaced
    await wait_settled(stack.dsn, expected=6)
    toots = stack.mastodon.toots.values()
    assert any(t.edited_at is not None and t.text.startswith("【取消】") for t in toots)
    assert len(stack.x.live) == 1 and len(stack.bluesky.posts) == 1  # originals deleted, corrections posted
    await wait_for(lambda: "取り消されました" in (site / "alerts" / pid / "index.html").read_text())
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.url}/alerts/{pid}") as r:
            assert r.status == 200 and "取り消されました" in await r.text()
            etag = r.headers["ETag"]
        async with http.get(f"{stack.url}/alerts/{pid}", headers={"If-None-Match": etag}) as r:
            assert r.status == 304
        async with http.get(stack.url + "/feeds/cap") as r:
            assert r.status == 200 and "application/atom+xml" in r.headers["Content-Type"]
            index = etree.fromstring(await r.read())
        links = index.findall(".//{http://www.w3.org/2005/Atom}link[@type='application/cap+xml']")
        assert len(links) == 2
        async with http.get(f"{stack.url}/feeds/cap/{second.public_id}.xml") as r:
            doc = await r.read()
        assert b"<references>" in doc and b"<language>en-US</language>" in doc
        async with http.get(stack.url + "/feeds/atom/numazu-heda") as r:
            assert r.status == 200
        async with http.get(stack.url + "/open-data/alerts.csv") as r:
            csv = (await r.read()).decode("utf-8-sig")
            assert "出典：気象庁" in csv and pid in csv
        async with http.get(stack.url + "/public/") as r:
            home = await r.text()
            assert 'lang="ja"' in home and "<svg" in home and 'href="/"' not in home
    assert (site / "feeds" / "cap" / f"{second.public_id}.xml").exists()
    assert (site / "feeds" / "atom" / "index.atom").exists() and (site / "public" / "index.html").exists()


async def test_a_broadcast_stays_on_the_site_after_it_expired(stack: Stack) -> None:
    """Re-listen: what the loudspeakers said stays on the home page for 24 h, in force or not."""
    said = "こちらは、ぼうさいぬまづです。沼津市全域に避難指示を発令しました。"
    aired = make_alert(
        "broadcast-relisten-1",
        source="broadcast",
        kind="broadcast",
        event="避難指示",
        headline="防災行政無線",
        description=said,
        sent=datetime.now(UTC),
        expires=datetime.now(UTC) + timedelta(seconds=2),
        public_id="",
    )
    assert stack.service.context is not None and stack.service.publication is not None
    await stack.service.context.emit(aired)
    await wait_settled(stack.dsn, expected=1)
    await asyncio.sleep(2.1)  # expired: no longer among the alerts in force
    await stack.service.publication.site.rebuild(None)
    async with aiohttp.ClientSession() as http, http.get(stack.url + "/public/") as r:
        home = await r.text()
    now_part, relisten = home.split('id="relisten"', 1)
    assert said not in now_part  # not "in force" any more
    assert said in relisten.split('id="by-district"', 1)[0]
    on_disk = (stack.state / "site" / "public" / "index.html").read_text()
    assert said in on_disk
