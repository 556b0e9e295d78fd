"""The LINE Messaging API stand-in, driven over HTTP the way LINE's reference says a client must.

https://developers.line.biz/en/reference/messaging-api/ (push, multicast, quota, bot info,
status codes), https://developers.line.biz/en/docs/messaging-api/retrying-api-request/
(X-Line-Retry-Key) and https://developers.line.biz/en/faq/tags/message/ (blocked users).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from dispatcher.standins.line_api import LineStandIn

TOKEN = "line-channel-access-token-never-printed"
ALICE = "U" + "a" * 32
BOB = "U" + "b" * 32
CAROL = "U" + "c" * 32


class FakeClock:
    """Wall-clock seconds that move only when told to."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def standin() -> AsyncIterator[LineStandIn]:
    server = LineStandIn(TOKEN, quota=1000)
    server.clock = FakeClock()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def text(body: str) -> dict[str, Any]:
    return {"type": "text", "text": body}


async def call(
    http: aiohttp.ClientSession,
    standin: LineStandIn,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    token: str | None = TOKEN,
    retry_key: str | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    if retry_key is not None:
        headers["X-Line-Retry-Key"] = retry_key
    method = "GET" if body is None else "POST"
    async with http.request(method, standin.base_url + path, json=body, headers=headers) as response:
        return response.status, await response.json(), dict(response.headers)


async def push(http: aiohttp.ClientSession, standin: LineStandIn, to: str, *messages: dict[str, Any], **kw: Any) -> Any:
    return await call(http, standin, "/v2/bot/message/push", {"to": to, "messages": list(messages)}, **kw)


async def test_push_answers_sent_messages_and_counts_one(http: aiohttp.ClientSession, standin: LineStandIn) -> None:
    status, body, headers = await push(http, standin, ALICE, text("【津波警報】沼津市"), retry_key=str(uuid.uuid4()))
    assert status == 200
    assert len(body["sentMessages"]) == 1
    assert body["sentMessages"][0]["id"].isdigit()
    assert body["sentMessages"][0]["quoteToken"]
    assert uuid.UUID(headers["x-line-request-id"])
    assert [d.texts for d in standin.delivered_to(ALICE)] == [["【津波警報】沼津市"]]
    assert (await call(http, standin, "/v2/bot/message/quota/consumption"))[1] == {"totalUsage": 1}
    assert (await call(http, standin, "/v2/bot/message/quota"))[1] == {"type": "limited", "value": 1000}


async def test_retry_key_runs_a_request_once(http: aiohttp.ClientSession, standin: LineStandIn) -> None:
    key = str(uuid.uuid4())
    first = await push(http, standin, ALICE, text("one"), retry_key=key)
    again = await push(http, standin, ALICE, text("one"), retry_key=key)
    assert first[0] == 200
    assert again[0] == 409
    assert again[1] == {"message": "The retry key is already accepted", "sentMessages": first[1]["sentMessages"]}
    assert again[2]["x-line-accepted-request-id"] == first[2]["x-line-request-id"]
    assert again[2]["x-line-request-id"] != first[2]["x-line-request-id"]
    # Another key is another request.
    assert (await push(http, standin, ALICE, text("one"), retry_key=str(uuid.uuid4())))[0] == 200
    assert len(standin.delivered_to(ALICE)) == 2
    # The key is remembered for 24 hours.
    standin.clock.now += 24 * 3600 + 1  # type: ignore[attr-defined]
    assert (await push(http, standin, ALICE, text("one"), retry_key=key))[0] == 200


async def test_multicast_conflict_has_no_sent_messages(http: aiohttp.ClientSession, standin: LineStandIn) -> None:
    key = str(uuid.uuid4())
    body = {"to": [ALICE, BOB], "messages": [text("x")]}
    assert (await call(http, standin, "/v2/bot/message/multicast", body, retry_key=key))[:2] == (200, {})
    status, answer, headers = await call(http, standin, "/v2/bot/message/multicast", body, retry_key=key)
    assert (status, answer) == (409, {"message": "The retry key is already accepted"})
    assert "x-line-accepted-request-id" in headers


async def test_retry_key_must_be_a_uuid_and_is_refused_on_reply(
    http: aiohttp.ClientSession, standin: LineStandIn
) -> None:
    status, body, _ = await push(http, standin, ALICE, text("x"), retry_key="alert-42-attempt-1")
    assert status == 400
    assert "X-Line-Retry-Key" in body["message"]
    token = standin.issue_reply_token(ALICE)
    reply = {"replyToken": token, "messages": [text("x")]}
    status, _, _ = await call(http, standin, "/v2/bot/message/reply", reply, retry_key=str(uuid.uuid4()))
    assert status == 400
    assert standin.deliveries == []


async def test_a_lost_answer_then_a_retry_delivers_once(http: aiohttp.ClientSession, standin: LineStandIn) -> None:
    key = str(uuid.uuid4())
    standin.fail(500, after_accept=True)
    lost = await push(http, standin, ALICE, text("lost answer"), retry_key=key)
    assert lost[0] == 500
    retried = await push(http, standin, ALICE, text("lost answer"), retry_key=key)
    assert retried[0] == 409
    assert retried[2]["x-line-accepted-request-id"] == lost[2]["x-line-request-id"]
    assert len(standin.delivered_to(ALICE)) == 1
    # A failure before acceptance sends nothing, and the same key then goes through.
    key = str(uuid.uuid4())
    standin.fail(503)
    assert (await push(http, standin, BOB, text("retry me"), retry_key=key))[0] == 503
    assert standin.delivered_to(BOB) == []
    assert (await push(http, standin, BOB, text("retry me"), retry_key=key))[0] == 200
    assert len(standin.delivered_to(BOB)) == 1


async def test_request_body_errors_have_details(http: aiohttp.ClientSession, standin: LineStandIn) -> None:
    status, body, _ = await call(
        http, standin, "/v2/bot/message/multicast", {"to": [ALICE] * 501, "messages": [text("x")]}
    )
    assert status == 400
    assert body == {
        "message": "The request body has 1 error(s)",
        "details": [{"message": "Size must be between 1 and 500", "property": "to"}],
    }
    status, body, _ = await push(http, standin, ALICE, *[text(str(i)) for i in range(6)])
    assert (status, body["details"]) == (400, [{"message": "Size must be between 1 and 5", "property": "messages"}])
    status, body, _ = await push(http, standin, ALICE, text(""), {"type": "carrier-pigeon"})
    assert status == 400
    assert body["message"] == "The request body has 2 error(s)"
    assert [d["property"] for d in body["details"]] == ["messages[0].text", "messages[1].type"]
    status, body, _ = await push(http, standin, "not-a-user-id", text("x"))
    assert (status, body) == (
        400,
        {"message": "The property, 'to', in the request body is invalid (line: -, column: -)"},
    )
    assert standin.deliveries == []
    assert {r.reason for r in standin.refusals} == {"invalid body", "malformed recipient ID"}


async def test_text_length_counts_utf16_code_units(http: aiohttp.ClientSession, standin: LineStandIn) -> None:
    assert (await push(http, standin, ALICE, text("津" * 5000)))[0] == 200
    assert (await push(http, standin, ALICE, text("😀" * 2500)))[0] == 200
    status, body, _ = await push(http, standin, ALICE, text("😀" * 2500 + "a"))
    assert status == 400
    assert body["details"] == [{"message": "Length must be between 0 and 5000", "property": "messages[0].text"}]


async def test_unparsable_and_non_json_bodies(http: aiohttp.ClientSession, standin: LineStandIn) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with http.post(standin.base_url + "/v2/bot/message/push", data=b'{"to": ', headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["message"].startswith("The request body could not be parsed as JSON (line: 1")
    headers["Content-Type"] = "text/plain"
    async with http.post(standin.base_url + "/v2/bot/message/push", data=b"hello", headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["message"] == "The content type, 'text/plain', is not supported"


async def test_wrong_missing_or_revoked_token_is_401(http: aiohttp.ClientSession, standin: LineStandIn) -> None:
    status, body, _ = await push(http, standin, ALICE, text("x"), token=None)
    assert status == 401
    assert body["message"].startswith("Authorization header required")
    status, body, _ = await push(http, standin, ALICE, text("x"), token="stolen")
    assert status == 401
    assert body["message"].startswith("Authentication failed.")
    assert (await call(http, standin, "/v2/bot/info"))[0] == 200
    standin.revoke_token()
    assert (await call(http, standin, "/v2/bot/info"))[0] == 401
    assert standin.deliveries == []


async def test_blocked_users_get_200_and_nothing(http: aiohttp.ClientSession, standin: LineStandIn) -> None:
    standin.block(BOB)
    standin.forget(CAROL)
    status, body, _ = await push(http, standin, BOB, text("x"))
    assert status == 200
    assert len(body["sentMessages"]) == 1
    assert standin.delivered_to(BOB) == []
    assert standin.deliveries[-1].reason == "blocked"
    status, body, _ = await push(http, standin, CAROL, text("x"))
    assert (status, body) == (400, {"message": "Failed to send messages"})
    body = {"to": [ALICE, BOB, CAROL], "messages": [text("multi")]}
    assert (await call(http, standin, "/v2/bot/message/multicast", body))[:2] == (200, {})
    assert [d.to for d in standin.deliveries if d.delivered] == [ALICE]
    assert (await call(http, standin, "/v2/bot/message/quota/consumption"))[1] == {"totalUsage": 1}


async def test_monthly_quota_429_sends_to_no_one(http: aiohttp.ClientSession, standin: LineStandIn) -> None:
    standin.quota = 3
    assert (await call(http, standin, "/v2/bot/message/multicast", {"to": [ALICE, BOB], "messages": [text("1")]}))[
        0
    ] == 200
    status, body, _ = await call(
        http, standin, "/v2/bot/message/multicast", {"to": [ALICE, BOB], "messages": [text("2")]}
    )
    assert (status, body) == (429, {"message": "You have reached your monthly limit."})
    assert len(standin.deliveries) == 2
    assert (await push(http, standin, CAROL, text("3")))[0] == 200
    assert (await call(http, standin, "/v2/bot/message/quota/consumption"))[1] == {"totalUsage": 3}
    standin.quota = None
    assert (await call(http, standin, "/v2/bot/message/quota"))[1] == {"type": "none"}


async def test_rate_limit_per_second_is_enforced(http: aiohttp.ClientSession) -> None:
    standin = LineStandIn(TOKEN, push_rate=2)
    clock = FakeClock()
    standin.clock = clock
    await standin.start()
    try:
        assert [(await push(http, standin, ALICE, text(str(i))))[0] for i in range(3)] == [200, 200, 429]
        status, body, _ = await push(http, standin, ALICE, text("x"))
        assert (status, body) == (429, {"message": "The API rate limit has been exceeded. Try again later."})
        clock.now += 1.0
        assert (await push(http, standin, ALICE, text("next second")))[0] == 200
        standin.throttle()
        assert (await push(http, standin, ALICE, text("x")))[0] == 429
        assert standin.rate_limited == 3
        assert len(standin.deliveries) == 3
    finally:
        await standin.stop()


async def test_default_rates_are_lines_published_limits() -> None:
    standin = LineStandIn()
    assert standin._windows["push"].limit == 2000
    assert standin._windows["multicast"].limit == 200


async def test_dropped_message_looks_sent(http: aiohttp.ClientSession, standin: LineStandIn) -> None:
    standin.drop(user_id=ALICE)
    status, body, _ = await push(http, standin, ALICE, text("never arrives"))
    assert status == 200
    assert body["sentMessages"]
    assert standin.deliveries[-1].reason == "dropped"
    assert standin.delivered_to(ALICE) == []
    # LINE believes it sent it, so it counts.
    assert (await call(http, standin, "/v2/bot/message/quota/consumption"))[1] == {"totalUsage": 1}
    assert (await push(http, standin, ALICE, text("arrives")))[0] == 200
    assert [d.texts for d in standin.delivered_to(ALICE)] == [["arrives"]]


async def test_reply_token_is_single_use_expires_and_is_free(http: aiohttp.ClientSession, standin: LineStandIn) -> None:
    token = standin.issue_reply_token(ALICE)
    status, body, _ = await call(
        http, standin, "/v2/bot/message/reply", {"replyToken": token, "messages": [text("hi")]}
    )
    assert status == 200
    assert len(body["sentMessages"]) == 1
    assert [d.texts for d in standin.delivered_to(ALICE)] == [["hi"]]
    status, body, _ = await call(
        http, standin, "/v2/bot/message/reply", {"replyToken": token, "messages": [text("again")]}
    )
    assert (status, body) == (400, {"message": "Invalid reply token"})
    late = standin.issue_reply_token(BOB)
    standin.clock.now += 61  # type: ignore[attr-defined]
    status, _, _ = await call(http, standin, "/v2/bot/message/reply", {"replyToken": late, "messages": [text("late")]})
    assert status == 400
    assert (await call(http, standin, "/v2/bot/message/quota/consumption"))[1] == {"totalUsage": 0}


async def test_bot_info_and_stats(http: aiohttp.ClientSession, standin: LineStandIn) -> None:
    status, info, _ = await call(http, standin, "/v2/bot/info")
    assert status == 200
    assert info["userId"].startswith("U") and len(info["userId"]) == 33
    assert info["chatMode"] == "bot"
    await push(http, standin, ALICE, text("x"))
    await push(http, standin, ALICE, text("x"), token="wrong")
    async with http.get(standin.base_url + "/_standin/stats") as response:
        stats = await response.json()
    assert stats["requests"] == 3
    assert stats["delivery_count"] == 1
    assert stats["total_usage"] == 1
    assert stats["refusals"][0]["status"] == 401


async def test_cli_prints_base_url_and_serves_until_sigterm(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dispatcher.standins.line_api", "--token", TOKEN, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        base_url = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        async with http.get(base_url + "/v2/bot/info", headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 200
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 20) == 0
