"""The X API v2 stand-in, driven over HTTP the way X's documentation says a client must.

Requests are signed here with OAuth 1.0a written from RFC 5849 §3.4 and X's
"Creating a signature" page, independently of the stand-in's verifier; both are checked
against X's worked example. Manage Posts: https://docs.x.com/x-api/posts/manage-tweets/introduction;
limits: https://docs.x.com/x-api/fundamentals/rate-limits; length: twitter-text config v3.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import secrets
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import aiohttp
import pytest

from dispatcher.standins.x_api import OAuth1Credentials, XStandIn, oauth1_signature, weighted_length

CREDS = OAuth1Credentials("consumer-key", "consumer-secret", "1900000000000000001-token", "token-secret")
USER_TOKEN = "oauth2-user-access-token"
APP_TOKEN = "oauth2-app-only-bearer"


def enc(value: str) -> str:
    return quote(value, safe="-._~")


def oauth_header(
    method: str,
    url: str,
    creds: OAuth1Credentials = CREDS,
    *,
    nonce: str | None = None,
    timestamp: int | None = None,
    signed_url: str | None = None,
) -> str:
    """An ``Authorization: OAuth ...`` value for a JSON-bodied request (the body is not signed)."""
    oauth = {
        "oauth_consumer_key": creds.consumer_key,
        "oauth_nonce": nonce or secrets.token_hex(16),
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "oauth_token": creds.access_token,
        "oauth_version": "1.0",
    }
    parts = urlsplit(signed_url or url)
    params = list(oauth.items())
    params += parse_qsl(parts.query, keep_blank_values=True)
    normalized = "&".join(sorted(f"{enc(k)}={enc(v)}" for k, v in params))
    base = f"{method}&{enc(f'{parts.scheme}://{parts.netloc}{parts.path}')}&{enc(normalized)}"
    key = f"{enc(creds.consumer_secret)}&{enc(creds.access_token_secret)}"
    oauth["oauth_signature"] = base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha1).digest()).decode()
    return "OAuth " + ", ".join(f'{enc(k)}="{enc(v)}"' for k, v in sorted(oauth.items()))


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def standin() -> AsyncIterator[XStandIn]:
    server = XStandIn(CREDS, user_bearer_tokens=frozenset({USER_TOKEN}), app_bearer_token=APP_TOKEN)
    server.clock = FakeClock()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession,
    standin: XStandIn,
    body: dict[str, Any],
    *,
    auth: str | None = None,
    path: str = "/2/tweets",
) -> tuple[int, Any, dict[str, str]]:
    url = standin.base_url + path
    headers = {"Authorization": auth if auth is not None else oauth_header("POST", url, timestamp=int(standin.clock()))}
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, await response.json(), dict(response.headers)


async def delete(http: aiohttp.ClientSession, standin: XStandIn, post_id: str) -> tuple[int, Any, dict[str, str]]:
    url = f"{standin.base_url}/2/tweets/{post_id}"
    headers = {"Authorization": oauth_header("DELETE", url, timestamp=int(standin.clock()))}
    async with http.delete(url, headers=headers) as response:
        return response.status, await response.json(), dict(response.headers)


def test_signature_matches_xs_worked_example() -> None:
    # https://docs.x.com/resources/fundamentals/authentication/oauth-1-0a/creating-a-signature
    params = [
        ("include_entities", "true"),
        ("status", "Hello Ladies + Gentlemen, a signed OAuth request!"),
        ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
        ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "1318622958"),
        ("oauth_token", "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb"),
        ("oauth_version", "1.0"),
    ]
    signature = oauth1_signature(
        "POST",
        "https://api.twitter.com/1.1/statuses/update.json",
        params,
        "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
        "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
    )
    assert signature == "hCtSmYh+iHYCEqBWrE7C7hYmtUk="


async def test_post_is_201_with_tco_links_and_limit_headers(http: aiohttp.ClientSession, standin: XStandIn) -> None:
    status, body, headers = await post(http, standin, {"text": "【津波警報】沼津市 https://bousai.example/a/1"})
    assert status == 201
    data = body["data"]
    assert data["id"].isdigit()
    assert data["edit_history_tweet_ids"] == [data["id"]]
    assert data["text"].startswith("【津波警報】沼津市 https://t.co/")
    assert len(data["text"].rsplit("/", 1)[1]) == 10
    assert headers["x-rate-limit-limit"] == "100"
    assert headers["x-rate-limit-remaining"] == "99"
    assert int(headers["x-rate-limit-reset"]) == math.ceil(standin.clock() + 900)
    assert headers["x-app-limit-24hour-limit"] == "10000"
    assert standin.live[0].text == "【津波警報】沼津市 https://bousai.example/a/1"
    status, reply, _ = await post(http, standin, {"text": "続報", "reply": {"in_reply_to_tweet_id": data["id"]}})
    assert status == 201
    assert standin.posts[reply["data"]["id"]].in_reply_to_tweet_id == data["id"]
    status, body, _ = await post(http, standin, {"text": "迷子", "reply": {"in_reply_to_tweet_id": "1"}})
    assert (status, body["title"]) == (403, "Forbidden")
    assert "reply to a Tweet that is deleted" in body["detail"]


async def test_oauth1_signature_rules(http: aiohttp.ClientSession, standin: XStandIn) -> None:
    url = standin.base_url + "/2/tweets"
    now = int(standin.clock())
    wrong_secret = OAuth1Credentials(CREDS.consumer_key, "guessed", CREDS.access_token, CREDS.access_token_secret)
    wrong_token = OAuth1Credentials(
        CREDS.consumer_key, CREDS.consumer_secret, "someone-else", CREDS.access_token_secret
    )
    refused = [
        oauth_header("POST", url, wrong_secret, timestamp=now),
        oauth_header("POST", url, wrong_token, timestamp=now),
        oauth_header("POST", url, timestamp=now - 301),
        oauth_header("DELETE", url, timestamp=now),
        oauth_header("POST", url, timestamp=now, signed_url=url.replace("127.0.0.1", "localhost")),
    ]
    for i, auth in enumerate(refused):
        status, body, _ = await post(http, standin, {"text": f"x{i}"}, auth=auth)
        assert (status, body) == (
            401,
            {"title": "Unauthorized", "detail": "Unauthorized", "type": "about:blank", "status": 401},
        )
    reasons = [r.reason for r in standin.refusals]
    assert reasons == [
        "signature does not match",
        "unknown consumer key or token",
        "timestamp missing or out of bounds",
        "signature does not match",
        "signature does not match",
    ]
    # A nonce is good once.
    auth = oauth_header("POST", url, nonce="once", timestamp=now)
    assert (await post(http, standin, {"text": "first"}, auth=auth))[0] == 201
    assert (await post(http, standin, {"text": "second"}, auth=auth))[0] == 401
    # Query parameters are part of what is signed.
    query_url = url + "?source=numazu%20dispatcher"
    assert (
        await post(
            http,
            standin,
            {"text": "q"},
            auth=oauth_header("POST", query_url, timestamp=now),
            path="/2/tweets?source=numazu%20dispatcher",
        )
    )[0] == 201
    assert (
        await post(
            http, standin, {"text": "q2"}, auth=oauth_header("POST", url, timestamp=now), path="/2/tweets?source=x"
        )
    )[0] == 401
    assert [p.text for p in standin.live] == ["first", "q"]


async def test_bearer_tokens(http: aiohttp.ClientSession, standin: XStandIn) -> None:
    assert (await post(http, standin, {"text": "user token"}, auth=f"Bearer {USER_TOKEN}"))[0] == 201
    status, body, _ = await post(http, standin, {"text": "app token"}, auth=f"Bearer {APP_TOKEN}")
    assert (status, body["title"]) == (403, "Unsupported Authentication")
    assert body["type"] == "https://api.twitter.com/2/problems/unsupported-authentication"
    assert (await post(http, standin, {"text": "stolen"}, auth="Bearer stolen"))[0] == 401
    assert (await post(http, standin, {"text": "nothing"}, auth=""))[0] == 401
    async with http.get(standin.base_url + "/2/users/me", headers={"Authorization": f"Bearer {USER_TOKEN}"}) as r:
        assert (await r.json())["data"]["username"] == "numazu_bousai"
    standin.revoke()
    assert (await post(http, standin, {"text": "after revoke"}, auth=f"Bearer {USER_TOKEN}"))[0] == 401
    assert len(standin.live) == 1


def test_weighted_length_follows_twitter_text_v3() -> None:
    assert weighted_length("a" * 280) == 280
    assert weighted_length("日本語") == 6
    assert weighted_length("👨\u200d👩\u200d👧\u200d👦") == 2
    assert weighted_length("🇯🇵") == 2
    assert weighted_length("cafe\u0301") == 4
    assert weighted_length("\u2014") == 1
    assert weighted_length("\u2026") == 2
    assert weighted_length("詳細 https://bousai.example/" + "p" * 200) == 5 + 23
    assert weighted_length("詳細はhttps://bousai.example/a/1をご覧ください") == 6 + 23 + 14


async def test_too_long_is_a_400_invalid_request(http: aiohttp.ClientSession, standin: XStandIn) -> None:
    assert (await post(http, standin, {"text": "津" * 140}))[0] == 201
    status, body, _ = await post(http, standin, {"text": "津" * 141})
    assert status == 400
    assert body["title"] == "Invalid Request"
    assert body["errors"][0]["message"].startswith("Your Tweet text is too long.")
    assert (await post(http, standin, {"text": "a" * 256 + " https://bousai.example/" + "p" * 100}))[0] == 201
    assert (await post(http, standin, {"text": "b" * 257 + " https://bousai.example/" + "p" * 100}))[0] == 400
    assert (await post(http, standin, {"text": ""}))[0] == 400
    assert len(standin.live) == 2


async def test_duplicate_content_is_403(http: aiohttp.ClientSession, standin: XStandIn) -> None:
    status, first, _ = await post(http, standin, {"text": "避難指示 沼津市"})
    assert status == 201
    status, body, _ = await post(http, standin, {"text": "避難指示 沼津市"})
    assert (status, body["detail"]) == (403, "You are not allowed to create a Tweet with duplicate content.")
    assert (await delete(http, standin, first["data"]["id"]))[:2] == (200, {"data": {"deleted": True}})
    assert (await post(http, standin, {"text": "避難指示 沼津市"}))[0] == 201
    standin.clock.now += 24 * 3600 + 1  # type: ignore[attr-defined]
    assert (await post(http, standin, {"text": "避難指示 沼津市"}))[0] == 201


async def test_100_posts_per_15_minutes(http: aiohttp.ClientSession, standin: XStandIn) -> None:
    for i in range(100):
        assert (await post(http, standin, {"text": f"post {i}"}))[0] == 201
    status, body, headers = await post(http, standin, {"text": "post 100"})
    assert (status, body["title"]) == (429, "Too Many Requests")
    assert headers["x-rate-limit-remaining"] == "0"
    reset = int(headers["x-rate-limit-reset"])
    standin.clock.now = reset  # type: ignore[attr-defined]
    status, _, headers = await post(http, standin, {"text": "post 100"})
    assert (status, headers["x-rate-limit-remaining"]) == (201, "99")
    assert headers["x-app-limit-24hour-remaining"] == str(10000 - 101)


async def test_deletions_and_their_limit(http: aiohttp.ClientSession, standin: XStandIn) -> None:
    ids = [(await post(http, standin, {"text": f"p{i}"}))[1]["data"]["id"] for i in range(51)]
    statuses = [(await delete(http, standin, post_id))[0] for post_id in ids]
    assert statuses == [200] * 50 + [429]
    standin.clock.now += 900  # type: ignore[attr-defined]
    status, body, _ = await delete(http, standin, ids[0])
    assert (status, body["title"]) == (404, "Not Found Error")
    assert standin.deletions == 50


async def test_cost_counter(http: aiohttp.ClientSession, standin: XStandIn) -> None:
    await post(http, standin, {"text": "一"})
    await post(http, standin, {"text": "二"})
    await post(http, standin, {"text": "三 https://bousai.example/a/3"})
    await post(http, standin, {"text": "津" * 141})
    assert standin.cost == Decimal("0.230")
    async with http.get(standin.base_url + "/_standin/stats") as response:
        stats = await response.json()
    assert (stats["post_count"], stats["posts_with_url"], stats["cost_usd"]) == (3, 1, "0.230")


async def test_injected_failures(http: aiohttp.ClientSession, standin: XStandIn) -> None:
    standin.fail(503)
    assert (await post(http, standin, {"text": "x"}))[0] == 503
    standin.throttle()
    status, _, headers = await post(http, standin, {"text": "x"})
    assert (status, headers["x-rate-limit-remaining"]) == (429, "0")
    assert (await post(http, standin, {"text": "x"}))[0] == 201
    assert standin.rate_limited == 1


async def test_cli_prints_base_url_and_serves_until_sigterm(http: aiohttp.ClientSession) -> None:
    args = ["--consumer-key", "k", "--consumer-secret", "s", "--access-token", "t", "--access-token-secret", "ts"]
    args += ["--bearer-token", USER_TOKEN]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dispatcher.standins.x_api", *args, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        base_url = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        async with http.get(base_url + "/2/users/me", headers={"Authorization": f"Bearer {USER_TOKEN}"}) as r:
            assert r.status == 200
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 20) == 0
