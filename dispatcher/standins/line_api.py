"""A local stand-in for the LINE Messaging API (sending side), for the demo, tests and benchmarks.

It speaks the wire format of https://developers.line.biz/en/reference/messaging-api/
(cross-checked with the OpenAPI spec, https://github.com/line/line-openapi messaging-api.yml):
``POST /v2/bot/message/push`` (``to`` + 1–5 ``messages``, answering ``sentMessages``),
``POST /v2/bot/message/multicast`` (1–500 user IDs, answering ``{}``),
``POST /v2/bot/message/reply`` (a webhook's ``replyToken``, single use), ``GET
/v2/bot/message/quota`` and ``/quota/consumption`` and ``GET /v2/bot/info``, with a
``Bearer`` channel access token. Every answer carries ``x-line-request-id``; errors are
``{"message": ..., "details": [{"message", "property"}]}``.

``X-Line-Retry-Key`` (a UUID, push and multicast only, remembered 24 hours) makes a
request run once: a repeat of an accepted key is 409 with ``x-line-accepted-request-id``
(https://developers.line.biz/en/docs/messaging-api/retrying-api-request/). A 429 is
either the per-endpoint rate limit (push 2,000 and multicast 200 requests a second,
enforced) or the monthly quota ("You have reached your monthly limit."), and a 429
sends nothing to anyone (https://developers.line.biz/en/docs/messaging-api/handling-http-429-errors/).
As the FAQ says (https://developers.line.biz/en/faq/tags/message/), a message to a user
who blocked the account is answered 200, not delivered and not counted, and a push to
a user ID that does not exist is 400 "Failed to send messages"; this stand-in assumes
multicast skips such IDs silently, as it does blocked ones. Reply messages are free.

Knobs: blocked and unknown users, a revoked token (401), server errors before or
after the work is done, injected 429s, and ``drop()``: LINE answers 200 but the
message never arrives, for the reconciliation that compares sends with reality.
The other direction (webhook events POSTed to us) is :mod:`dispatcher.standins.line_webhook`.

``python -m dispatcher.standins.line_api --token T --quota 1000`` prints its base_url
(for ``https://api.line.me``) and serves until SIGTERM; ``GET /_standin/stats`` reports.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dispatcher.standins.base import FixedWindow, Injected, StandInServer, bearer, cli_main, json_body

# User, group and room IDs: U, C or R followed by 32 lowercase hex digits.
CHAT_ID = re.compile(r"[UCR][0-9a-f]{32}")
USER_ID = re.compile(r"U[0-9a-f]{32}")
MESSAGE_TYPES = {"text", "textV2", "sticker", "image", "video", "audio", "location", "imagemap", "template", "flex"}
MAX_TEXT = 5000
MAX_QUICK_REPLY_ITEMS = 13
QUICK_REPLY_ACTIONS = {"postback", "message", "uri", "datetimepicker", "camera", "cameraRoll", "location"}
RETRY_KEY_TTL = 24 * 3600.0
BOT_INFO: dict[str, Any] = {
    "userId": "U" + "7d0e5c8b1a2f4e6d9c3b5a7f1e2d4c6b",
    "basicId": "@204numazu",
    "displayName": "沼津市防災情報",
    "pictureUrl": "https://profile.line-scdn.net/numazu-bousai",
    "chatMode": "bot",
    "markAsReadMode": "auto",
}
RATE_LIMITED = "The API rate limit has been exceeded. Try again later."
MONTHLY_LIMIT = "You have reached your monthly limit."
# Not LINE's: where another process (the chat tool of line_webhook) gets a reply token.
REPLY_TOKEN_PATH = "/_standin/reply_token"  # noqa: S105 - a path, not a secret


@dataclass(frozen=True, slots=True)
class LineDelivery:
    """The messages of one accepted request for one recipient, delivered or not."""

    request_id: str
    endpoint: str
    to: str
    messages: tuple[dict[str, Any], ...]
    retry_key: str | None
    delivered: bool
    # Why not delivered: "blocked", "unknown user" or "dropped"; "" when delivered.
    reason: str
    # time.monotonic() at acceptance.
    at: float

    @property
    def texts(self) -> list[str]:
        return [str(m.get("text", "")) for m in self.messages if m.get("type") == "text"]


@dataclass(frozen=True, slots=True)
class _Accepted:
    request_id: str
    sent_messages: list[dict[str, str]]
    at: float


class LineStandIn(StandInServer):
    """An aiohttp server answering like ``api.line.me`` for one channel access token.

    ``channel_access_token=None`` accepts any Bearer token. ``quota``: the monthly
    message limit (None: "none", unlimited). ``push_rate`` / ``multicast_rate``:
    requests per second before 429, LINE's published limits by default.
    """

    def __init__(
        self,
        channel_access_token: str | None = None,
        *,
        quota: int | None = None,
        push_rate: int = 2000,
        multicast_rate: int = 200,
        reply_token_ttl: float = 60.0,
    ) -> None:
        super().__init__()
        self.channel_access_token = channel_access_token
        self.quota = quota
        self.quota_used = 0
        self.reply_token_ttl = reply_token_ttl
        self.deliveries: list[LineDelivery] = []
        self.blocked: set[str] = set()
        self.unknown: set[str] = set()
        self.token_revoked = False
        self.rate_limited = 0
        self._windows = {
            "push": FixedWindow("push", push_rate, 1.0),
            "multicast": FixedWindow("multicast", multicast_rate, 1.0),
        }
        self._drops: list[Injected] = []
        self._accepted_keys: dict[str, _Accepted] = {}
        self._reply_tokens: dict[str, tuple[str, float]] = {}

    # -- knobs ---------------------------------------------------------------

    def block(self, user_id: str) -> None:
        """The user blocked the account: 200, not delivered, not counted."""
        self.blocked.add(user_id)

    def forget(self, user_id: str) -> None:
        """The user ID does not exist: push is 400 "Failed to send messages"."""
        self.unknown.add(user_id)

    def revoke_token(self) -> None:
        """The channel access token was revoked or expired: 401 from now on."""
        self.token_revoked = True

    def fail(
        self, status: int = 500, *, count: int = 1, after_accept: bool = False, endpoint: str | None = None
    ) -> None:
        """Answer the next ``count`` sends (of ``endpoint``: push, multicast, reply) with ``status``.

        ``after_accept``: send the messages and remember the retry key first, then
        answer the error, as when LINE's answer is lost on the way back.
        """
        self.failures.add(Injected(status, count, endpoint, after_accept=after_accept))

    def throttle(self, *, count: int = 1, endpoint: str | None = None) -> None:
        """Answer the next ``count`` sends with the rate-limit 429."""
        self.failures.add(Injected(429, count, endpoint))

    def drop(self, *, count: int = 1, user_id: str | None = None) -> None:
        """Answer 200 but do not deliver the next ``count`` messages (to ``user_id``, or anyone)."""
        self._drops.append(Injected(200, count, user_id))

    def issue_reply_token(self, user_id: str) -> str:
        """A reply token for an event from ``user_id``, as a webhook would carry it."""
        token = secrets.token_hex(16)
        self._reply_tokens[token] = (user_id, self.clock())
        return token

    def reset(self) -> None:
        super().reset()
        self.deliveries.clear()
        self.blocked.clear()
        self.unknown.clear()
        self.token_revoked = False
        self.rate_limited = 0
        self.quota_used = 0
        self._drops.clear()
        self._accepted_keys.clear()
        self._reply_tokens.clear()
        for window in self._windows.values():
            window.clear()

    def delivered_to(self, user_id: str) -> list[LineDelivery]:
        """What ``user_id`` actually received."""
        return [d for d in self.deliveries if d.to == user_id and d.delivered]

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v2/bot/message/push", self._push)
        router.add_post("/v2/bot/message/multicast", self._multicast)
        router.add_post("/v2/bot/message/reply", self._reply)
        router.add_get("/v2/bot/message/quota", self._quota)
        router.add_get("/v2/bot/message/quota/consumption", self._consumption)
        router.add_get("/v2/bot/info", self._info)
        router.add_post(REPLY_TOKEN_PATH, self._mint_reply_token)

    def provider_stats(self, since: int) -> dict[str, Any]:
        return {
            "rate_limited": self.rate_limited,
            "quota": {"type": "none"} if self.quota is None else {"type": "limited", "value": self.quota},
            "total_usage": self.quota_used,
            "delivery_count": len(self.deliveries),
            "deliveries": [
                {
                    "request_id": d.request_id,
                    "endpoint": d.endpoint,
                    "to": d.to,
                    "delivered": d.delivered,
                    "at": d.at,
                    "texts": d.texts,
                    "quick_replies": _quick_replies(d.messages),
                }
                for d in self.deliveries[since:]
            ],
        }

    # -- protocol ------------------------------------------------------------

    @staticmethod
    def _answer(
        body: dict[str, Any], status: int = 200, *, request_id: str | None = None, **headers: str
    ) -> web.Response:
        headers["x-line-request-id"] = request_id or str(uuid.uuid4())
        return web.json_response(body, status=status, headers=headers)

    def _error(
        self,
        request: web.Request,
        status: int,
        message: str,
        reason: str,
        details: list[dict[str, str]] | None = None,
        request_id: str | None = None,
    ) -> web.Response:
        body: dict[str, Any] = {"message": message}
        if details:
            body["details"] = details
        return self.refused(request, self._answer(body, status, request_id=request_id), reason)

    def _authorize(self, request: web.Request) -> web.Response | None:
        token = bearer(request)
        if token is None:
            message = "Authorization header required. Must follow the scheme, 'Authorization: Bearer <ACCESS TOKEN>'"
            return self._error(request, 401, message, "no bearer token")
        if self.token_revoked or (self.channel_access_token is not None and token != self.channel_access_token):
            message = "Authentication failed. Confirm that the access token in the authorization header is valid."
            return self._error(request, 401, message, "invalid channel access token")
        return None

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        if request.content_type != "application/json":
            return self._error(
                request, 400, f"The content type, '{request.content_type}', is not supported", "not JSON"
            )
        try:
            body = await json_body(request)
        except ValueError as exc:
            line, column = getattr(exc, "lineno", "-"), getattr(exc, "colno", "-")
            message = f"The request body could not be parsed as JSON (line: {line}, column: {column})"
            return self._error(request, 400, message, "unparsable JSON")
        if not isinstance(body, dict):
            return self._error(request, 400, "The request body has 1 error(s)", "body not an object")
        return body

    @staticmethod
    def _check_messages(messages: Any) -> list[dict[str, str]]:
        if not isinstance(messages, list) or not messages:
            return [{"message": "May not be empty", "property": "messages"}]
        if len(messages) > 5:
            return [{"message": "Size must be between 1 and 5", "property": "messages"}]
        details = []
        for i, message in enumerate(messages):
            kind = message.get("type") if isinstance(message, dict) else None
            if kind not in MESSAGE_TYPES:
                allowed = ", ".join(sorted(MESSAGE_TYPES))
                details.append(
                    {"message": f"Must be one of the following values: [{allowed}]", "property": f"messages[{i}].type"}
                )
            elif kind == "text":
                text = message.get("text")
                if not isinstance(text, str) or not text:
                    details.append({"message": "May not be empty", "property": f"messages[{i}].text"})
                # LINE counts UTF-16 code units: an emoji outside the BMP is 2 characters.
                elif len(text.encode("utf-16-le")) // 2 > MAX_TEXT:
                    details.append(
                        {"message": f"Length must be between 0 and {MAX_TEXT}", "property": f"messages[{i}].text"}
                    )
            if isinstance(message, dict) and "quickReply" in message:
                details.extend(_check_quick_reply(message["quickReply"], f"messages[{i}].quickReply"))
        return details

    def _retry_key(self, request: web.Request) -> str | web.Response | None:
        key = request.headers.get("X-Line-Retry-Key")
        if key is None:
            return None
        try:
            parsed = uuid.UUID(key)
        except ValueError:
            parsed = None
        if parsed is None or str(parsed) != key.lower():
            # The wording of this error is not documented; the status is.
            return self._error(request, 400, "The value for the 'X-Line-Retry-Key' header is invalid", "bad retry key")
        return key.lower()

    def _conflict(self, request: web.Request, key: str | None, endpoint: str) -> web.Response | None:
        now = self.clock()
        self._accepted_keys = {k: a for k, a in self._accepted_keys.items() if now - a.at < RETRY_KEY_TTL}
        accepted = self._accepted_keys.get(key) if key else None
        if accepted is None:
            return None
        body: dict[str, Any] = {"message": "The retry key is already accepted"}
        if endpoint == "push":
            body["sentMessages"] = accepted.sent_messages
        response = self._answer(body, 409, **{"x-line-accepted-request-id": accepted.request_id})
        return self.refused(request, response, "retry key already accepted")

    def _limits(self, request: web.Request, endpoint: str, injected: Injected | None) -> web.Response | None:
        if injected is not None and injected.status == 429:
            self.rate_limited += 1
            return self._error(request, 429, RATE_LIMITED, "injected 429")
        window = self._windows.get(endpoint)
        if window is not None and not window.take("channel", self.clock()).allowed:
            self.rate_limited += 1
            return self._error(request, 429, RATE_LIMITED, f"{endpoint} rate limit")
        return None

    def _deliver(
        self, endpoint: str, recipients: list[str], messages: list[dict[str, Any]], key: str | None, now: float
    ) -> tuple[str, list[dict[str, str]]]:
        request_id = str(uuid.uuid4())
        sent = [{"id": str(secrets.randbelow(10**18)), "quoteToken": secrets.token_urlsafe(24)} for _ in messages]
        for user_id in recipients:
            reason = "blocked" if user_id in self.blocked else "unknown user" if user_id in self.unknown else ""
            if not reason:
                drop = next((d for d in self._drops if d.remaining > 0 and d.match in (None, user_id)), None)
                if drop is not None:
                    drop.remaining -= 1
                    reason = "dropped"
            # A dropped message was counted: LINE believes it sent it.
            if endpoint != "reply" and reason in ("", "dropped"):
                self.quota_used += 1
            self.deliveries.append(
                LineDelivery(request_id, endpoint, user_id, tuple(messages), key, not reason, reason, time.monotonic())
            )
        if key is not None:
            self._accepted_keys[key] = _Accepted(request_id, sent, now)
        return request_id, sent

    async def _send(self, request: web.Request, endpoint: str) -> web.Response:
        refused = self._authorize(request)
        if refused is not None:
            return refused
        key = self._retry_key(request)
        if isinstance(key, web.Response):
            return key
        if key is not None and endpoint == "reply":
            return self._error(request, 400, "X-Line-Retry-Key is not supported by this endpoint", "retry key on reply")
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        messages: Any = body.get("messages")
        details = self._check_messages(messages)
        to: Any = body.get("to")
        if endpoint == "push" and not (isinstance(to, str) and to):
            details.insert(0, {"message": "May not be empty", "property": "to"})
        if endpoint == "multicast":
            if not isinstance(to, list) or not to:
                details.insert(0, {"message": "May not be empty", "property": "to"})
            elif len(to) > 500:
                details.insert(0, {"message": "Size must be between 1 and 500", "property": "to"})
        if endpoint == "reply" and not body.get("replyToken"):
            details.insert(0, {"message": "May not be empty", "property": "replyToken"})
        if details:
            return self._error(request, 400, f"The request body has {len(details)} error(s)", "invalid body", details)
        recipients: list[str] = [to] if endpoint == "push" else list(to) if endpoint == "multicast" else []
        pattern = CHAT_ID if endpoint == "push" else USER_ID
        if any(not isinstance(r, str) or not pattern.fullmatch(r) for r in recipients):
            message = "The property, 'to', in the request body is invalid (line: -, column: -)"
            return self._error(request, 400, message, "malformed recipient ID")
        conflict = self._conflict(request, key, endpoint)
        if conflict is not None:
            return conflict
        injected = self.failures.take(endpoint)
        limited = self._limits(request, endpoint, injected)
        if limited is not None:
            return limited
        now = self.clock()
        if endpoint == "reply":
            token = str(body["replyToken"])
            issued = self._reply_tokens.pop(token, None)
            if issued is None or now - issued[1] > self.reply_token_ttl:
                return self._error(request, 400, "Invalid reply token", "unknown, used or expired reply token")
            recipients = [issued[0]]
        if endpoint == "push" and recipients[0] in self.unknown:
            return self._error(request, 400, "Failed to send messages", "user ID does not exist")
        if injected is not None and not injected.after_accept:
            return self._error(request, injected.status, "An internal server error occurred.", "injected failure")
        countable = [r for r in recipients if r not in self.blocked and r not in self.unknown]
        if endpoint != "reply" and self.quota is not None and self.quota_used + len(countable) > self.quota:
            return self._error(request, 429, MONTHLY_LIMIT, "monthly quota spent")
        request_id, sent = self._deliver(endpoint, recipients, messages, key, now)
        if injected is not None:
            # The work is done and the key remembered; only the answer is lost.
            message = "An internal server error occurred."
            return self._error(request, injected.status, message, "injected after accept", request_id=request_id)
        return self._answer({} if endpoint == "multicast" else {"sentMessages": sent}, request_id=request_id)

    async def _push(self, request: web.Request) -> web.Response:
        return await self._send(request, "push")

    async def _multicast(self, request: web.Request) -> web.Response:
        return await self._send(request, "multicast")

    async def _reply(self, request: web.Request) -> web.Response:
        return await self._send(request, "reply")

    async def _quota(self, request: web.Request) -> web.Response:
        refused = self._authorize(request)
        if refused is not None:
            return refused
        return self._answer({"type": "none"} if self.quota is None else {"type": "limited", "value": self.quota})

    async def _consumption(self, request: web.Request) -> web.Response:
        refused = self._authorize(request)
        return refused if refused is not None else self._answer({"totalUsage": self.quota_used})

    async def _mint_reply_token(self, request: web.Request) -> web.Response:
        """Not LINE's: a reply token for a webhook event sent from another process (``{"userId"}``)."""
        try:
            body = await json_body(request)
            user_id = str(body["userId"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "userId required"}, status=400)
        return web.json_response({"replyToken": self.issue_reply_token(user_id)})

    async def _info(self, request: web.Request) -> web.Response:
        refused = self._authorize(request)
        return refused if refused is not None else self._answer(BOT_INFO)


def _quick_replies(messages: tuple[dict[str, Any], ...]) -> list[dict[str, str]]:
    """The quick replies under the last message (what the person can tap), for stats: label, type, data."""
    quick = messages[-1].get("quickReply") if messages else None
    items = quick.get("items", []) if isinstance(quick, dict) else []
    actions = [i.get("action") for i in items if isinstance(i, dict)]
    return [
        {"label": str(a.get("label", "")), "type": str(a.get("type", "")), "data": str(a.get("data", ""))}
        for a in actions
        if isinstance(a, dict)
    ]


def _check_quick_reply(quick: Any, where: str) -> list[dict[str, str]]:
    """LINE's rules for quick replies: 1-13 items, each an action with a label of at most 20 characters.

    https://developers.line.biz/en/reference/messaging-api/#quick-reply; postback data at
    most 300 characters, displayText at most 300; the location action has only a label.
    """
    items = quick.get("items") if isinstance(quick, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_QUICK_REPLY_ITEMS:
        return [{"message": f"Size must be between 1 and {MAX_QUICK_REPLY_ITEMS}", "property": f"{where}.items"}]
    details: list[dict[str, str]] = []
    for j, item in enumerate(items):
        at = f"{where}.items[{j}].action"
        action = item.get("action") if isinstance(item, dict) and item.get("type") == "action" else None
        kind = action.get("type") if isinstance(action, dict) else None
        if not isinstance(action, dict) or kind not in QUICK_REPLY_ACTIONS:
            details.append(
                {
                    "message": "Must be one of the following values: " + str(sorted(QUICK_REPLY_ACTIONS)),
                    "property": f"{at}.type",
                }
            )
            continue
        label = action.get("label")
        if not isinstance(label, str) or not 1 <= len(label) <= 20:
            details.append({"message": "Length must be between 1 and 20", "property": f"{at}.label"})
        if kind == "postback":
            data = action.get("data")
            if not isinstance(data, str) or not 1 <= len(data) <= 300:
                details.append({"message": "Length must be between 1 and 300", "property": f"{at}.data"})
            shown = action.get("displayText")
            if shown is not None and (not isinstance(shown, str) or not 1 <= len(shown) <= 300):
                details.append({"message": "Length must be between 1 and 300", "property": f"{at}.displayText"})
    return details


# -- standalone ----------------------------------------------------------------


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", default=None, help="accept only this channel access token (default: any)")
    parser.add_argument("--quota", type=int, default=None, help="monthly message limit (default: none)")
    parser.add_argument("--push-rate", type=int, default=2000, help="push requests per second before 429")
    parser.add_argument("--multicast-rate", type=int, default=200, help="multicast requests per second before 429")


def _build(args: argparse.Namespace) -> LineStandIn:
    return LineStandIn(args.token, quota=args.quota, push_rate=args.push_rate, multicast_rate=args.multicast_rate)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dispatcher.standins.line_api``."""
    description = "Serve the LINE Messaging API stand-in until SIGTERM; print its base_url first."
    return cli_main("python -m dispatcher.standins.line_api", description, _arguments, _build, argv)


if __name__ == "__main__":
    sys.exit(main())
