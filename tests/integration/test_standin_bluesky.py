"""The Bluesky PDS stand-in, driven over XRPC the way the AT Protocol documentation says a client must.

Log in with createSession, write with the access token, refresh when it answers
ExpiredToken (https://docs.bsky.app/docs/advanced-guides/posts), facets with UTF-8 byte
offsets (https://docs.bsky.app/docs/advanced-guides/post-richtext), limits from
https://docs.bsky.app/docs/advanced-guides/rate-limits.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from dispatcher.standins.bluesky import BlueskyStandIn

HANDLE = "numazu-bousai.bsky.social"
PASSWORD = "abcd-efgh-ijkl-mnop"
URL = "https://bousai.example/a/20261129-tsnm3kei"
TID = re.compile(r"[234567a-z]{13}")


class FakeClock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


async def make(**options: Any) -> BlueskyStandIn:
    server = BlueskyStandIn(HANDLE, PASSWORD, **options)
    server.clock = FakeClock()
    await server.start()
    return server


@pytest.fixture
async def standin() -> AsyncIterator[BlueskyStandIn]:
    server = await make()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def xrpc(
    http: aiohttp.ClientSession,
    standin: BlueskyStandIn,
    nsid: str,
    body: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    query: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    method = "GET" if body is None else "POST"
    url = f"{standin.base_url}/xrpc/{nsid}"
    async with http.request(method, url, json=body, headers=headers, params=query) as response:
        return response.status, await response.json(), dict(response.headers)


async def login(http: aiohttp.ClientSession, standin: BlueskyStandIn) -> dict[str, Any]:
    status, session, _ = await xrpc(
        http, standin, "com.atproto.server.createSession", {"identifier": HANDLE, "password": PASSWORD}
    )
    assert status == 200
    return session


def post(text: str, **fields: Any) -> dict[str, Any]:
    return {"$type": "app.bsky.feed.post", "text": text, "createdAt": datetime.now(UTC).isoformat(), **fields}


def link_facet(text: str, url: str) -> dict[str, Any]:
    start = text.encode().index(url.encode())
    return {
        "index": {"byteStart": start, "byteEnd": start + len(url.encode())},
        "features": [{"$type": "app.bsky.richtext.facet#link", "uri": url}],
    }


async def create(
    http: aiohttp.ClientSession, standin: BlueskyStandIn, token: str, record: dict[str, Any], **extra: Any
) -> tuple[int, dict[str, Any], dict[str, str]]:
    body = {"repo": standin.did, "collection": "app.bsky.feed.post", "record": record, **extra}
    return await xrpc(http, standin, "com.atproto.repo.createRecord", body, token=token)


async def test_create_session_by_handle_or_did(http: aiohttp.ClientSession, standin: BlueskyStandIn) -> None:
    status, session, headers = await xrpc(
        http, standin, "com.atproto.server.createSession", {"identifier": HANDLE, "password": PASSWORD}
    )
    assert status == 200
    assert (session["did"], session["handle"], session["active"]) == (standin.did, HANDLE, True)
    assert session["accessJwt"].count(".") == 2 and session["refreshJwt"].count(".") == 2
    assert (headers["RateLimit-Limit"], headers["RateLimit-Remaining"]) == ("30", "29")
    assert headers["RateLimit-Policy"] == "30;w=300"
    assert int(headers["RateLimit-Reset"]) == int(standin.clock()) + 300
    body = {"identifier": standin.did, "password": PASSWORD}
    assert (await xrpc(http, standin, "com.atproto.server.createSession", body))[0] == 200


async def test_wrong_password_and_missing_input(http: aiohttp.ClientSession, standin: BlueskyStandIn) -> None:
    body = {"identifier": HANDLE, "password": "wrong"}
    status, answer, _ = await xrpc(http, standin, "com.atproto.server.createSession", body)
    assert (status, answer) == (401, {"error": "AuthenticationRequired", "message": "Invalid identifier or password"})
    status, answer, _ = await xrpc(http, standin, "com.atproto.server.createSession", {"identifier": HANDLE})
    assert (status, answer["error"]) == (400, "InvalidRequest")


async def test_create_session_is_limited_30_per_5_minutes_and_per_day(http: aiohttp.ClientSession) -> None:
    standin = await make(session_limits=(30, 35))
    try:
        body = {"identifier": HANDLE, "password": "guess"}
        statuses = [(await xrpc(http, standin, "com.atproto.server.createSession", body))[0] for _ in range(31)]
        assert statuses == [401] * 30 + [429]
        body["password"] = PASSWORD
        status, answer, headers = await xrpc(http, standin, "com.atproto.server.createSession", body)
        assert (status, answer) == (429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"})
        assert (headers["RateLimit-Remaining"], headers["RateLimit-Policy"]) == ("0", "30;w=300")
        standin.clock.now = float(headers["RateLimit-Reset"])  # type: ignore[attr-defined]
        statuses = [(await xrpc(http, standin, "com.atproto.server.createSession", body))[0] for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        headers = (await xrpc(http, standin, "com.atproto.server.createSession", body))[2]
        assert headers["RateLimit-Policy"] == "35;w=86400"
        assert standin.rate_limited == 4
    finally:
        await standin.stop()


async def test_post_with_a_link_facet(http: aiohttp.ClientSession, standin: BlueskyStandIn) -> None:
    session = await login(http, standin)
    text = f"【津波警報】沼津市に津波警報。高台へ避難してください。詳細 {URL}"
    status, created, headers = await create(
        http, standin, session["accessJwt"], post(text, facets=[link_facet(text, URL)], langs=["ja"])
    )
    assert status == 200
    did, collection, rkey = created["uri"].removeprefix("at://").split("/")
    assert (did, collection) == (standin.did, "app.bsky.feed.post")
    assert TID.fullmatch(rkey)
    assert created["cid"].startswith("bafyrei")
    assert set(created["commit"]) == {"cid", "rev"}
    assert (headers["RateLimit-Policy"], headers["RateLimit-Remaining"]) == ("5000;w=3600", "4997")
    query = {"repo": HANDLE, "collection": "app.bsky.feed.post", "rkey": rkey}
    status, got, _ = await xrpc(http, standin, "com.atproto.repo.getRecord", query=query)
    assert (status, got["uri"], got["cid"], got["value"]["text"]) == (200, created["uri"], created["cid"], text)
    reply = {
        "root": {"uri": created["uri"], "cid": created["cid"]},
        "parent": {"uri": created["uri"], "cid": created["cid"]},
    }
    assert (await create(http, standin, session["accessJwt"], post("続報", reply=reply)))[0] == 200
    status, answer, _ = await create(http, standin, session["accessJwt"], post("続報", reply={"root": reply["root"]}))
    assert (status, answer["error"]) == (400, "InvalidRequest")
    assert len(standin.posts) == 2


async def test_facets_must_cover_their_link_in_utf8_bytes(http: aiohttp.ClientSession, standin: BlueskyStandIn) -> None:
    token = (await login(http, standin))["accessJwt"]
    text = f"詳細 {URL}"
    char_start = text.index(URL)  # str index, the classic mistake: 3, where the bytes say 7
    by_chars = {
        "index": {"byteStart": char_start, "byteEnd": char_start + len(URL)},
        "features": link_facet(text, URL)["features"],
    }
    status, answer, _ = await create(http, standin, token, post(text, facets=[by_chars]))
    assert (status, answer["error"]) == (400, "InvalidRequest")
    assert answer["message"].startswith("Invalid app.bsky.feed.post record: Record/facets/0")
    split = {"index": {"byteStart": 1, "byteEnd": 4}, "features": by_chars["features"]}
    assert (await create(http, standin, token, post(text, facets=[split])))[0] == 400
    beyond = {"index": {"byteStart": 7, "byteEnd": 700}, "features": by_chars["features"]}
    assert (await create(http, standin, token, post(text, facets=[beyond])))[0] == 400
    negative = {"index": {"byteStart": -1, "byteEnd": 4}, "features": by_chars["features"]}
    assert (await create(http, standin, token, post(text, facets=[negative])))[0] == 400
    shown = "詳細 bousai.example/a/2026..."
    shortened = link_facet(shown, "bousai.example/a/2026...")
    shortened["features"] = [{"$type": "app.bsky.richtext.facet#link", "uri": URL}]
    assert (await create(http, standin, token, post(shown, facets=[shortened])))[0] == 200
    assert (await create(http, standin, token, post(text, facets=[link_facet(text, URL)])))[0] == 200
    assert len(standin.posts) == 2
    # The real PDS takes the misplaced facet, and publishes a wrong link.
    standin.strict_facets = False
    assert (await create(http, standin, token, post(text, facets=[by_chars])))[0] == 200
    assert (await create(http, standin, token, post(text, facets=[negative])))[0] == 400


async def test_text_limits_are_graphemes_and_bytes(http: aiohttp.ClientSession, standin: BlueskyStandIn) -> None:
    token = (await login(http, standin))["accessJwt"]
    assert (await create(http, standin, token, post("津" * 300)))[0] == 200
    assert (await create(http, standin, token, post("e\u0301" * 300)))[0] == 200
    status, answer, _ = await create(http, standin, token, post("津" * 301))
    assert answer["message"] == "Invalid app.bsky.feed.post record: Record/text must not be longer than 300 graphemes"
    family = "👨\u200d👩\u200d👧\u200d👦"  # one grapheme, 25 bytes
    status, answer, _ = await create(http, standin, token, post(family * 121))
    assert status == 400
    assert answer["message"].endswith("must not be longer than 3000 characters")
    assert (await create(http, standin, token, post(family * 120)))[0] == 200
    bad_date = {**post("x"), "createdAt": "yesterday"}
    assert (await create(http, standin, token, bad_date))[0] == 400
    assert (await create(http, standin, token, {**post("x"), "$type": "app.bsky.feed.like"}))[0] == 400
    assert len(standin.posts) == 3


async def test_expired_token_then_refresh(http: aiohttp.ClientSession, standin: BlueskyStandIn) -> None:
    session = await login(http, standin)
    standin.expire_access_tokens()
    status, answer, _ = await create(http, standin, session["accessJwt"], post("x"))
    assert (status, answer) == (400, {"error": "ExpiredToken", "message": "Token has expired"})
    status, refreshed, _ = await xrpc(
        http, standin, "com.atproto.server.refreshSession", {}, token=session["refreshJwt"]
    )
    assert status == 200
    assert refreshed["did"] == standin.did
    assert (await create(http, standin, refreshed["accessJwt"], post("x")))[0] == 200
    # Refresh tokens are single use; scopes do not mix.
    status, answer, _ = await xrpc(http, standin, "com.atproto.server.refreshSession", {}, token=session["refreshJwt"])
    assert (status, answer) == (400, {"error": "ExpiredToken", "message": "Token has been revoked"})
    status, answer, _ = await xrpc(http, standin, "com.atproto.server.refreshSession", {}, token=refreshed["accessJwt"])
    assert (status, answer) == (400, {"error": "InvalidToken", "message": "Bad token scope"})
    assert (await create(http, standin, refreshed["refreshJwt"], post("y")))[1]["error"] == "InvalidToken"
    assert (await create(http, standin, "not.a.jwt", post("y")))[1]["error"] == "InvalidToken"
    status, answer, _ = await xrpc(http, standin, "com.atproto.repo.createRecord", {"repo": standin.did})
    assert (status, answer["error"]) == (401, "AuthMissing")
    # Access tokens live two hours.
    standin.clock.now += 2 * 3600  # type: ignore[attr-defined]
    assert (await create(http, standin, refreshed["accessJwt"], post("z")))[1]["error"] == "ExpiredToken"


async def test_write_points(http: aiohttp.ClientSession) -> None:
    standin = await make(write_points=(10, 35000))
    try:
        token = (await login(http, standin))["accessJwt"]
        statuses = [(await create(http, standin, token, post(f"p{i}")))[0] for i in range(4)]
        assert statuses == [200, 200, 200, 429]
        rkey = standin.posts[0].uri.rsplit("/", 1)[1]
        body = {"repo": standin.did, "collection": "app.bsky.feed.post", "rkey": rkey}
        status, answer, headers = await xrpc(http, standin, "com.atproto.repo.deleteRecord", body, token=token)
        assert (status, set(answer), headers["RateLimit-Remaining"]) == (200, {"commit"}, "0")
        status, _, headers = await xrpc(http, standin, "com.atproto.repo.deleteRecord", body, token=token)
        assert (status, headers["RateLimit-Policy"]) == (429, "10;w=3600")
        assert standin.points_spent == 10
    finally:
        await standin.stop()


async def test_delete_and_get_missing(http: aiohttp.ClientSession, standin: BlueskyStandIn) -> None:
    token = (await login(http, standin))["accessJwt"]
    created = (await create(http, standin, token, post("消す")))[1]
    rkey = created["uri"].rsplit("/", 1)[1]
    body = {"repo": standin.did, "collection": "app.bsky.feed.post", "rkey": rkey}
    assert (await xrpc(http, standin, "com.atproto.repo.deleteRecord", body, token=token))[0] == 200
    query = {"repo": standin.did, "collection": "app.bsky.feed.post", "rkey": rkey}
    status, answer, _ = await xrpc(http, standin, "com.atproto.repo.getRecord", query=query)
    assert (status, answer["error"]) == (400, "RecordNotFound")
    assert (await xrpc(http, standin, "com.atproto.repo.deleteRecord", body, token=token))[:2] == (200, {})
    status, answer, _ = await create(http, standin, token, post("x"), repo="did:plc:someoneelse")
    assert (status, answer["message"]) == (400, "Could not find repo: did:plc:someoneelse")


async def test_injected_failures_and_stats(http: aiohttp.ClientSession, standin: BlueskyStandIn) -> None:
    token = (await login(http, standin))["accessJwt"]
    standin.fail(502)
    assert (await create(http, standin, token, post("x")))[:2] == (
        502,
        {"error": "UpstreamFailure", "message": "Upstream Failure"},
    )
    standin.throttle()
    assert (await create(http, standin, token, post("x")))[1]["error"] == "RateLimitExceeded"
    assert (await create(http, standin, token, post("x")))[0] == 200
    async with http.get(standin.base_url + "/_standin/stats") as response:
        stats = await response.json()
    assert (stats["sessions_created"], stats["record_count"], stats["points_spent"]) == (1, 1, 9)


async def test_cli_prints_base_url_and_serves_until_sigterm(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dispatcher.standins.bluesky", "--handle", HANDLE, "--password", PASSWORD,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        base_url = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        body = {"identifier": HANDLE, "password": PASSWORD}
        async with http.post(base_url + "/xrpc/com.atproto.server.createSession", json=body) as response:
            assert response.status == 200
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 20) == 0
