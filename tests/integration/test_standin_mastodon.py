"""The Mastodon stand-in, driven over HTTP the way Mastodon's API documentation says a client must.

https://docs.joinmastodon.org/methods/statuses/ (post, edit, history, delete,
Idempotency-Key), https://docs.joinmastodon.org/methods/instance/#v2 (limits) and
https://docs.joinmastodon.org/api/rate-limits/ (X-RateLimit headers).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from dispatcher.standins.mastodon import MastodonStandIn, countable_length

TOKEN = "mastodon-user-token-never-printed"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def standin() -> AsyncIterator[MastodonStandIn]:
    server = MastodonStandIn(TOKEN)
    server.clock = FakeClock()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def request(
    http: aiohttp.ClientSession,
    standin: MastodonStandIn,
    method: str,
    path: str,
    *,
    form: dict[str, str] | None = None,
    json: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    async with http.request(method, standin.base_url + path, data=form, json=json, headers=headers) as response:
        return response.status, await response.json(), dict(response.headers)


async def toot(http: aiohttp.ClientSession, standin: MastodonStandIn, text: str, **params: str) -> Any:
    return await request(http, standin, "POST", "/api/v1/statuses", form={"status": text, **params}, headers=AUTH)


async def test_post_a_status_as_form_and_as_json(http: aiohttp.ClientSession, standin: MastodonStandIn) -> None:
    status, body, headers = await toot(http, standin, "【津波警報】沼津市\nhttps://bousai.example/a/1", language="ja")
    assert status == 200
    assert body["id"].isdigit()
    assert body["visibility"] == "public"
    assert body["language"] == "ja"
    assert body["edited_at"] is None
    assert body["account"]["acct"] == "numazu_bousai"
    assert body["url"].endswith("/@numazu_bousai/" + body["id"])
    assert body["content"] == (
        '<p>【津波警報】沼津市<br /><a href="https://bousai.example/a/1" rel="nofollow noopener" '
        'target="_blank">https://bousai.example/a/1</a></p>'
    )
    assert datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    assert headers["X-RateLimit-Limit"] == "300"
    reply = {"status": "続報", "in_reply_to_id": body["id"], "visibility": "unlisted"}
    status, second, _ = await request(http, standin, "POST", "/api/v1/statuses", json=reply, headers=AUTH)
    assert status == 200
    assert second["in_reply_to_id"] == body["id"]
    assert second["visibility"] == "unlisted"
    assert int(second["id"]) > int(body["id"])
    assert [t.text for t in standin.posted] == ["【津波警報】沼津市\nhttps://bousai.example/a/1", "続報"]


async def test_idempotency_key_returns_the_same_status(http: aiohttp.ClientSession, standin: MastodonStandIn) -> None:
    key = {"Idempotency-Key": "alert-20261129-tsnm3kei-mastodon", **AUTH}
    first = await request(http, standin, "POST", "/api/v1/statuses", form={"status": "津波警報"}, headers=key)
    again = await request(http, standin, "POST", "/api/v1/statuses", form={"status": "津波警報"}, headers=key)
    assert first[0] == again[0] == 200
    assert again[1]["id"] == first[1]["id"]
    assert len(standin.posted) == 1
    other = {"Idempotency-Key": "another-key", **AUTH}
    assert (await request(http, standin, "POST", "/api/v1/statuses", form={"status": "津波警報"}, headers=other))[
        0
    ] == 200
    assert len(standin.posted) == 2
    # Keys are kept for an hour.
    standin.clock.now += 3601  # type: ignore[attr-defined]
    later = await request(http, standin, "POST", "/api/v1/statuses", form={"status": "津波警報"}, headers=key)
    assert later[1]["id"] != first[1]["id"]


async def test_edit_keeps_history_and_delete_returns_source(
    http: aiohttp.ClientSession, standin: MastodonStandIn
) -> None:
    _, posted, _ = await toot(http, standin, "大雨警報")
    path = f"/api/v1/statuses/{posted['id']}"
    standin.clock.now += 60  # type: ignore[attr-defined]
    status, edited, _ = await request(http, standin, "PUT", path, form={"status": "大雨警報(更新)"}, headers=AUTH)
    assert status == 200
    assert edited["id"] == posted["id"]
    assert edited["content"] == "<p>大雨警報(更新)</p>"
    assert edited["edited_at"] is not None
    status, history, _ = await request(http, standin, "GET", path + "/history")
    assert status == 200
    assert [h["content"] for h in history] == ["<p>大雨警報</p>", "<p>大雨警報(更新)</p>"]
    status, shown, _ = await request(http, standin, "GET", path)
    assert (status, shown["content"]) == (200, "<p>大雨警報(更新)</p>")
    status, deleted, _ = await request(http, standin, "DELETE", path, headers=AUTH)
    assert status == 200
    assert deleted["text"] == "大雨警報(更新)"
    assert (await request(http, standin, "GET", path))[:2] == (404, {"error": "Record not found"})


async def test_missing_or_foreign_statuses_are_404(http: aiohttp.ClientSession, standin: MastodonStandIn) -> None:
    assert (await request(http, standin, "DELETE", "/api/v1/statuses/1", headers=AUTH))[:2] == (
        404,
        {"error": "Record not found"},
    )
    assert (await request(http, standin, "PUT", "/api/v1/statuses/1", form={"status": "x"}, headers=AUTH))[0] == 404
    status, body, _ = await toot(http, standin, "返信", in_reply_to_id="42")
    assert (status, body) == (404, {"error": "The post you are trying to reply to does not appear to exist."})
    _, private, _ = await toot(http, standin, "関係者のみ", visibility="private")
    assert (await request(http, standin, "GET", f"/api/v1/statuses/{private['id']}"))[0] == 404
    assert (await request(http, standin, "GET", f"/api/v1/statuses/{private['id']}", headers=AUTH))[0] == 200


async def test_instance_reports_the_limits(http: aiohttp.ClientSession, standin: MastodonStandIn) -> None:
    status, instance, _ = await request(http, standin, "GET", "/api/v2/instance")
    assert status == 200
    assert instance["configuration"]["statuses"]["max_characters"] == 500
    assert instance["configuration"]["statuses"]["characters_reserved_per_url"] == 23


def test_length_is_counted_as_mastodon_counts_it() -> None:
    assert countable_length("a" * 10) == 10
    assert countable_length("詳細 https://bousai.example/" + "x" * 300) == 3 + 23
    assert countable_length("cc @numazu_city@mastodon.example") == len("cc @numazu_city")
    # Graphemes: a family emoji and a flag are one character each; a combining accent joins its letter.
    assert countable_length("👨\u200d👩\u200d👧\u200d👦🇯🇵e\u0301") == 3
    assert countable_length("本文", "注意") == 4
    # A URL ends where Japanese text resumes without a space.
    assert countable_length("詳細はhttps://bousai.example/a/1をご覧ください") == 3 + 23 + 7


async def test_too_long_is_422(http: aiohttp.ClientSession, standin: MastodonStandIn) -> None:
    assert (await toot(http, standin, "津" * 500))[0] == 200
    status, body, _ = await toot(http, standin, "津" * 501)
    assert (status, body) == (422, {"error": "Validation failed: Text character limit of 500 exceeded"})
    # A long URL still counts 23.
    assert (await toot(http, standin, "津" * 476 + " https://bousai.example/" + "p" * 400))[0] == 200
    status, body, _ = await toot(http, standin, "津" * 490, spoiler_text="訓練" * 6)
    assert status == 422
    status, body, _ = await toot(http, standin, "   ")
    assert (status, body) == (422, {"error": "Validation failed: Text can't be blank"})
    assert (await toot(http, standin, "x", visibility="everyone"))[0] == 422
    _, posted, _ = await toot(http, standin, "短い")
    status, _, _ = await request(
        http, standin, "PUT", f"/api/v1/statuses/{posted['id']}", form={"status": "長" * 501}, headers=AUTH
    )
    assert status == 422
    assert len(standin.posted) == 3
    assert any("character limit" in r.reason for r in standin.refusals)


async def test_writes_need_a_valid_bearer_token(http: aiohttp.ClientSession, standin: MastodonStandIn) -> None:
    form = {"status": "x"}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        status, body, _ = await request(http, standin, "POST", "/api/v1/statuses", form=form, headers=headers)
        assert (status, body) == (401, {"error": "The access token is invalid"})
    assert (await request(http, standin, "GET", "/api/v1/accounts/verify_credentials", headers=AUTH))[0] == 200
    standin.revoke_token()
    assert (await toot(http, standin, "x"))[0] == 401
    assert standin.posted == []


async def test_rate_limit_headers_and_300_per_5_minutes(http: aiohttp.ClientSession, standin: MastodonStandIn) -> None:
    clock: FakeClock = standin.clock  # type: ignore[assignment]
    clock.now = 1_800_000_000.0  # a multiple of 300: the window runs to +300 s
    remaining = []
    for _ in range(300):
        status, _, headers = await request(http, standin, "GET", "/api/v1/accounts/verify_credentials", headers=AUTH)
        assert status == 200
        remaining.append(int(headers["X-RateLimit-Remaining"]))
    assert remaining[:2] == [299, 298] and remaining[-1] == 0
    status, body, headers = await toot(http, standin, "one too many")
    assert (status, body) == (429, {"error": "Too many requests"})
    assert headers["X-RateLimit-Limit"] == "300"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == "2027-01-15T08:05:00.000000Z"
    assert datetime.fromisoformat(headers["X-RateLimit-Reset"].replace("Z", "+00:00")).timestamp() == clock.now + 300
    assert standin.posted == []
    clock.now += 300
    status, _, headers = await toot(http, standin, "next window")
    assert (status, headers["X-RateLimit-Remaining"]) == (200, "299")


async def test_thirty_deletions_per_30_minutes(http: aiohttp.ClientSession, standin: MastodonStandIn) -> None:
    ids = [(await toot(http, standin, f"投稿{i}"))[1]["id"] for i in range(31)]
    statuses = []
    for status_id in ids:
        status, _, headers = await request(http, standin, "DELETE", f"/api/v1/statuses/{status_id}", headers=AUTH)
        statuses.append(status)
    assert statuses == [200] * 30 + [429]
    assert headers["X-RateLimit-Limit"] == "30"
    assert len(standin.posted) == 1


async def test_injected_failures(http: aiohttp.ClientSession, standin: MastodonStandIn) -> None:
    standin.fail(503)
    assert (await toot(http, standin, "x"))[:2] == (503, {"error": "Service Unavailable"})
    standin.throttle()
    status, _, headers = await toot(http, standin, "x")
    assert (status, headers["X-RateLimit-Remaining"]) == (429, "0")
    assert (await toot(http, standin, "x"))[0] == 200
    async with http.get(standin.base_url + "/_standin/stats") as response:
        stats = await response.json()
    assert stats["status_count"] == 1
    assert [r["status"] for r in stats["refusals"]] == [503, 429]


async def test_cli_prints_base_url_and_serves_until_sigterm(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dispatcher.standins.mastodon", "--token", TOKEN, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        base_url = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        async with http.get(base_url + "/api/v2/instance") as response:
            assert response.status == 200
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 20) == 0
