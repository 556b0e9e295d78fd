"""A local stand-in for the X API v2 (posting), for the demo, tests and benchmarks.

It speaks the wire format of https://docs.x.com/x-api/posts/manage-tweets/introduction:
``POST /2/tweets`` (JSON ``text``, ``reply.in_reply_to_tweet_id``) answering 201
``{"data": {"id", "text", "edit_history_tweet_ids"}}`` with its links rewritten to
``https://t.co/...`` as X does, ``DELETE /2/tweets/:id`` answering
``{"data": {"deleted": true}}``, and ``GET /2/users/me``. Errors are v2 problems:
``{"title", "detail", "type", "status"}``, or ``{"errors": [{"message"}], "title":
"Invalid Request", ...}`` for a bad request such as a text over 280.

Authentication is OAuth 1.0a user context, verified as RFC 5849 §3.4 defines the
HMAC-SHA1 signature (https://www.rfc-editor.org/rfc/rfc5849, and X's worked example at
https://docs.x.com/resources/fundamentals/authentication/oauth-1-0a/creating-a-signature):
a wrong signature, key, token, stale timestamp (over 5 minutes) or a reused nonce is
401. OAuth 2.0 user access tokens (``Bearer``) are the alternative; an app-only Bearer
token is 403 "Unsupported Authentication", since posting needs a user.

Length is twitter-text's weighted length (config v3,
https://github.com/twitter/twitter-text/blob/master/config/v3.json): NFC-normalised
code points weigh 1 in the Latin, Greek, Cyrillic... ranges and 2 elsewhere (CJK), an
emoji sequence 2, any URL 23; over 280 is 400 "Your Tweet text is too long". The same
text as a live post of the last 24 hours is 403 duplicate content.

Limits, from https://docs.x.com/x-api/fundamentals/rate-limits: 100 posts per 15 minutes
per user, 10,000 per 24 hours per app, 50 deletions per 15 minutes per user, each
window starting at its first request; ``x-rate-limit-limit`` / ``-remaining`` /
``-reset`` (epoch seconds) and ``x-app-limit-24hour-*`` on every answer; 429 when spent.
X bills every post, and a post with a link far more (pay-per-usage,
https://docs.x.com/x-api/getting-started/pricing): the cost of what was accepted is
counted in ``cost`` and in stats.

``python -m dispatcher.standins.x_api --consumer-key K --consumer-secret S
--access-token T --access-token-secret TS`` prints its base_url (for
``https://api.x.com``) and serves until SIGTERM; ``GET /_standin/stats`` reports.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import string
import sys
import time
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import regex
from aiohttp import web

from dispatcher.standins.base import FixedWindow, StandInServer, bearer, cli_main, take_all
from dispatcher.standins.lengths import find_urls, replace_spans

MAX_WEIGHTED_LENGTH = 280
URL_LENGTH = 23
# twitter-text v3: code point ranges weighing 100 (one character); everything else 200.
LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
INVALID_CHARACTERS = {"\ufffe", "\ufeff", "\uffff"}
_EMOJI = regex.compile(r"[\p{Extended_Pictographic}\p{Regional_Indicator}\u20e3]")
_CLUSTER = regex.compile(r"\X")
_OAUTH_PARAM = re.compile(r'([\w.-]+)="([^"]*)"')
TOO_LONG = (
    "Your Tweet text is too long. For more information on how Twitter determines text length see "
    "https://github.com/twitter/twitter-text."
)
# USD per accepted request; the console shows the account's current rates.
PRICE_POST = Decimal("0.015")
PRICE_POST_WITH_URL = Decimal("0.200")


def weighted_length(text: str) -> int:
    """twitter-text v3's weighted length of ``text``, in characters (of 280)."""
    text = unicodedata.normalize("NFC", text)
    urls = dict(find_urls(text))
    weight, i = 0, 0
    while i < len(text):
        if i in urls:
            weight += URL_LENGTH * 100
            i = urls[i]
            continue
        match = _CLUSTER.match(text, i)
        cluster = str(match.group()) if match else text[i]
        if _EMOJI.search(cluster):
            # An emoji sequence (ZWJ family, flag, keycap, skin tone) weighs 2 however long.
            weight += 200
        else:
            weight += sum(100 if any(lo <= ord(c) <= hi for lo, hi in LIGHT_RANGES) else 200 for c in cluster)
        i += len(cluster)
    return weight // 100


def percent(value: str) -> str:
    """RFC 5849 §3.6 percent-encoding: everything but ALPHA, DIGIT, '-', '.', '_', '~'."""
    return quote(value, safe="~")


def signature_base_string(method: str, url: str, params: list[tuple[str, str]]) -> str:
    """RFC 5849 §3.4.1: METHOD & base string URI & normalized parameters, each encoded."""
    normalized = "&".join(f"{k}={v}" for k, v in sorted((percent(k), percent(v)) for k, v in params))
    return "&".join((method.upper(), percent(url), percent(normalized)))


def oauth1_signature(
    method: str, url: str, params: list[tuple[str, str]], consumer_secret: str, token_secret: str
) -> str:
    """The HMAC-SHA1 ``oauth_signature`` (base64) of a request (RFC 5849 §3.4.2)."""
    key = f"{percent(consumer_secret)}&{percent(token_secret)}"
    base = signature_base_string(method, url, params)
    return base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha1).digest()).decode()


@dataclass(frozen=True, slots=True)
class OAuth1Credentials:
    """The four values a user-context OAuth 1.0a request is signed with."""

    consumer_key: str
    consumer_secret: str
    access_token: str
    access_token_secret: str

    def __repr__(self) -> str:
        return f"OAuth1Credentials(consumer_key={self.consumer_key!r}, ...)"


@dataclass(slots=True)
class XPost:
    """One post the stand-in accepted."""

    id: str
    # The text as sent, and as X answers it (links rewritten to t.co).
    text: str
    posted_text: str
    in_reply_to_tweet_id: str | None
    has_url: bool
    cost: Decimal
    # time.monotonic() at acceptance; wall-clock seconds for the duplicate window.
    at: float
    created: float
    deleted: bool = False


class XStandIn(StandInServer):
    """An aiohttp server answering like ``api.x.com`` for one user and one app."""

    def __init__(
        self,
        credentials: OAuth1Credentials,
        *,
        user_id: str = "1900000000000000001",
        username: str = "numazu_bousai",
        user_bearer_tokens: frozenset[str] = frozenset(),
        app_bearer_token: str | None = None,
        post_limit: int = 100,
        app_daily_limit: int = 10_000,
        delete_limit: int = 50,
        timestamp_window: float = 300.0,
        duplicate_window: float = 24 * 3600.0,
    ) -> None:
        super().__init__()
        self.credentials = credentials
        self.user_id = user_id
        self.username = username
        self.user_bearer_tokens = set(user_bearer_tokens)
        self.app_bearer_token = app_bearer_token
        self.timestamp_window = timestamp_window
        self.duplicate_window = duplicate_window
        self.revoked = False
        self.posts: dict[str, XPost] = {}
        self.deletions = 0
        self.rate_limited = 0
        self._nonces: dict[str, float] = {}
        self._windows = {
            "post": FixedWindow("POST /2/tweets per user", post_limit, 900.0),
            "app": FixedWindow("POST /2/tweets per app", app_daily_limit, 86400.0),
            "delete": FixedWindow("DELETE /2/tweets/:id per user", delete_limit, 900.0),
        }

    # -- knobs ---------------------------------------------------------------

    def revoke(self) -> None:
        """The user revoked the app: every credential is 401 from now on."""
        self.revoked = True

    def reset(self) -> None:
        super().reset()
        self.posts.clear()
        self.deletions = self.rate_limited = 0
        self._nonces.clear()
        for window in self._windows.values():
            window.clear()

    @property
    def cost(self) -> Decimal:
        """What X would bill for the posts accepted so far, in USD."""
        return sum((p.cost for p in self.posts.values()), Decimal(0))

    @property
    def live(self) -> list[XPost]:
        return [p for p in self.posts.values() if not p.deleted]

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/2/tweets", self._create)
        router.add_delete("/2/tweets/{id}", self._delete)
        router.add_get("/2/users/me", self._me)

    def provider_stats(self, since: int) -> dict[str, Any]:
        posts = list(self.posts.values())
        return {
            "rate_limited": self.rate_limited,
            "post_count": len(posts),
            "posts_with_url": sum(1 for p in posts if p.has_url),
            "deletions": self.deletions,
            "cost_usd": str(self.cost),
            "posts": [{"id": p.id, "has_url": p.has_url, "cost": str(p.cost), "at": p.at} for p in posts[since:]],
        }

    # -- protocol ------------------------------------------------------------

    def _problem(
        self,
        request: web.Request,
        status: int,
        title: str,
        detail: str,
        reason: str,
        headers: dict[str, str],
        kind: str = "about:blank",
    ) -> web.Response:
        body = {"title": title, "detail": detail, "type": kind, "status": status}
        return self.refused(request, web.json_response(body, status=status, headers=headers), reason)

    def _invalid(self, request: web.Request, message: str, headers: dict[str, str]) -> web.Response:
        body = {
            "errors": [{"message": message}],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        }
        return self.refused(request, web.json_response(body, status=400, headers=headers), message)

    def _oauth1(self, request: web.Request, header: str, body: str) -> str | None:
        """Why the OAuth 1.0a ``header`` does not authenticate ``request``; None if it does."""
        oauth = {k: unquote(v) for k, v in _OAUTH_PARAM.findall(header)}
        creds = self.credentials
        if oauth.get("oauth_consumer_key") != creds.consumer_key or oauth.get("oauth_token") != creds.access_token:
            return "unknown consumer key or token"
        if oauth.get("oauth_signature_method") != "HMAC-SHA1" or oauth.get("oauth_version", "1.0") != "1.0":
            return "unsupported signature method or version"
        now = self.clock()
        timestamp, nonce = oauth.get("oauth_timestamp", ""), oauth.get("oauth_nonce", "")
        if not timestamp.isdigit() or abs(now - int(timestamp)) > self.timestamp_window:
            return "timestamp missing or out of bounds"
        self._nonces = {n: t for n, t in self._nonces.items() if now - t <= 2 * self.timestamp_window}
        if not nonce or nonce in self._nonces:
            return "nonce missing or reused"
        params = [(k, v) for k, v in oauth.items() if k not in ("oauth_signature", "realm")]
        params += list(request.query.items())
        if request.content_type == "application/x-www-form-urlencoded":
            params += parse_qsl(body, keep_blank_values=True)
        url = f"{request.scheme}://{request.host.lower()}{request.raw_path.split('?')[0]}"
        expected = oauth1_signature(request.method, url, params, creds.consumer_secret, creds.access_token_secret)
        if not hmac.compare_digest(expected.encode(), oauth.get("oauth_signature", "").encode()):
            return "signature does not match"
        self._nonces[nonce] = now
        return None

    async def _authenticate(self, request: web.Request, body: str) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = bearer(request)
        if header.startswith("OAuth "):
            reason = "revoked" if self.revoked else self._oauth1(request, header, body)
        elif token is not None and token == self.app_bearer_token and not self.revoked:
            detail = (
                "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  Supported "
                "authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context]."
            )
            kind = "https://api.twitter.com/2/problems/unsupported-authentication"
            return self._problem(request, 403, "Unsupported Authentication", detail, "app-only token", {}, kind)
        elif token is not None:
            reason = None if token in self.user_bearer_tokens and not self.revoked else "unknown bearer token"
        else:
            reason = "no Authorization header"
        if reason is None:
            return None
        return self._problem(request, 401, "Unauthorized", "Unauthorized", reason, {})

    def _spend(self, request: web.Request, names: tuple[str, ...]) -> dict[str, str] | web.Response:
        """Count the request in its windows; the headers to send, or the 429."""
        now = self.clock()
        keys = {"post": self.user_id, "app": "app", "delete": self.user_id}
        budgets = take_all(((self._windows[n], keys[n], 1) for n in names), now)
        allowed = all(b.allowed for b in budgets)
        headers = {}
        for name, budget in zip(names, budgets, strict=True):
            prefix = "x-app-limit-24hour" if name == "app" else "x-rate-limit"
            headers[f"{prefix}-limit"] = str(budget.limit)
            headers[f"{prefix}-remaining"] = str(budget.remaining)
            # Rounded up, so that a client waiting until then finds the window renewed.
            headers[f"{prefix}-reset"] = str(math.ceil(budget.reset_at))
        injected = self.failures.take()
        if not allowed or (injected is not None and injected.status == 429):
            self.rate_limited += 1
            headers["x-rate-limit-remaining"] = "0"
            reason = "rate limit spent" if not allowed else "injected 429"
            return self._problem(request, 429, "Too Many Requests", "Too Many Requests", reason, headers)
        if injected is not None:
            return self._problem(request, injected.status, "Service Unavailable", "Service Unavailable", "injected", {})
        return headers

    def _new_id(self) -> str:
        # Snowflake-shaped: milliseconds since X's epoch, shifted, plus randomness.
        return str(((int(time.time() * 1000) - 1288834974657) << 22) | secrets.randbits(22))

    async def _create(self, request: web.Request) -> web.Response:
        raw = await request.text()
        refused = await self._authenticate(request, raw)
        if refused is not None:
            return refused
        spent = self._spend(request, ("post", "app"))
        if isinstance(spent, web.Response):
            return spent
        headers = spent
        try:
            body = json.loads(raw)
        except ValueError:
            return self._invalid(request, "Request body is not valid JSON.", headers)
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return self._invalid(request, "$.text: must be a non-empty string, or the post must carry media.", headers)
        if any(c in INVALID_CHARACTERS for c in text):
            return self._invalid(request, "Your Tweet text contains an invalid character.", headers)
        if weighted_length(text) > MAX_WEIGHTED_LENGTH:
            return self._invalid(request, TOO_LONG, headers)
        reply = body.get("reply")
        reply_to = str(reply.get("in_reply_to_tweet_id", "")) if isinstance(reply, dict) else None
        if reply_to is not None and (reply_to not in self.posts or self.posts[reply_to].deleted):
            detail = "You attempted to reply to a Tweet that is deleted or not visible to you."
            return self._problem(request, 403, "Forbidden", detail, "reply target not found", headers)
        now = self.clock()
        if any(p.text == text and now - p.created < self.duplicate_window for p in self.live):
            detail = "You are not allowed to create a Tweet with duplicate content."
            return self._problem(request, 403, "Forbidden", detail, "duplicate content", headers)
        urls = find_urls(text)
        alphabet = string.ascii_letters + string.digits

        def tco(_: str) -> str:
            return "https://t.co/" + "".join(secrets.choice(alphabet) for _ in range(10))

        post = XPost(
            id=self._new_id(),
            text=text,
            posted_text=replace_spans(text, urls, tco),
            in_reply_to_tweet_id=reply_to,
            has_url=bool(urls),
            cost=PRICE_POST_WITH_URL if urls else PRICE_POST,
            at=time.monotonic(),
            created=now,
        )
        self.posts[post.id] = post
        data = {"id": post.id, "text": post.posted_text, "edit_history_tweet_ids": [post.id]}
        return web.json_response({"data": data}, status=201, headers=headers)

    async def _delete(self, request: web.Request) -> web.Response:
        refused = await self._authenticate(request, await request.text())
        if refused is not None:
            return refused
        spent = self._spend(request, ("delete",))
        if isinstance(spent, web.Response):
            return spent
        post = self.posts.get(request.match_info["id"])
        if post is None or post.deleted:
            # Unverified against X: the v2 "resource not found" problem for an unknown post.
            detail = f"Could not find tweet with id: [{request.match_info['id']}]."
            kind = "https://api.twitter.com/2/problems/resource-not-found"
            return self._problem(request, 404, "Not Found Error", detail, "no such post", spent, kind)
        post.deleted = True
        self.deletions += 1
        return web.json_response({"data": {"deleted": True}}, headers=spent)

    async def _me(self, request: web.Request) -> web.Response:
        refused = await self._authenticate(request, "")
        if refused is not None:
            return refused
        return web.json_response({"data": {"id": self.user_id, "name": "沼津市防災情報", "username": self.username}})


# -- standalone ----------------------------------------------------------------


def _arguments(parser: argparse.ArgumentParser) -> None:
    for name in ("consumer-key", "consumer-secret", "access-token", "access-token-secret"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--bearer-token", action="append", default=[], help="an OAuth 2.0 user token to accept")
    parser.add_argument("--post-limit", type=int, default=100, help="posts per 15 minutes per user")


def _build(args: argparse.Namespace) -> XStandIn:
    credentials = OAuth1Credentials(
        args.consumer_key, args.consumer_secret, args.access_token, args.access_token_secret
    )
    return XStandIn(credentials, user_bearer_tokens=frozenset(args.bearer_token), post_limit=args.post_limit)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dispatcher.standins.x_api``."""
    description = "Serve the X API v2 stand-in until SIGTERM; print its base_url first."
    return cli_main("python -m dispatcher.standins.x_api", description, _arguments, _build, argv)


if __name__ == "__main__":
    sys.exit(main())
