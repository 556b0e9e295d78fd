"""LINE: the city's official account, alerts by multicast to up to 500 residents a request.

Messaging API: https://developers.line.biz/en/reference/messaging-api/ (``POST
/v2/bot/message/multicast``, ``/reply``, ``GET /v2/bot/message/quota`` and
``/quota/consumption``, ``GET /v2/bot/info``); retry keys:
https://developers.line.biz/en/docs/messaging-api/retrying-api-request/; 429s:
https://developers.line.biz/en/docs/messaging-api/handling-http-429-errors/. Plain aiohttp
on the service's shared session, as for Mastodon: line-bot-sdk v3's ``AsyncMessagingApi``
would bring its own aiohttp session and pool per client (not the service's), pydantic
models validated on every request, and requests, urllib3, aenum, future and Deprecated
as dependencies, for four endpoints whose JSON is a few lines here.

Each ``send`` is one multicast of one text message to up to ``batch_size`` (500) user
IDs with an ``X-Line-Retry-Key``: the channel declares ``durable_batch_keys``, so the
worker mints a UUID per batch, stores it with the batch's deliveries and sends the same
key when exactly that batch is retried, after a lost answer or a restart.

How answers become results (the same for every recipient of the request):

=====================================================  ==========================================
LINE answer                                            result
=====================================================  ==========================================
200                                                    ``Delivered(x-line-request-id)``
409 (the retry key was accepted before)                ``Delivered(x-line-accepted-request-id)``
429 "monthly limit"                                    ``Retry(rate_limited)``, the channel paused
                                                       until the month ends (or an operator resumes)
429 rate limit                                         ``Retry(rate_limited, after=Retry-After or
                                                       rate_limit_wait)``; nothing was sent
400 (a bad body or ID)                                 ``Reject``
401, 403 (token, plan)                                 ``Retry``: our configuration, not the resident
5xx, timeouts, connection errors                       ``Retry``: the same key goes again
=====================================================  ==========================================

A multicast to someone who blocked the account is answered 200 and not delivered (LINE
tells us by the ``unfollow`` webhook event, :mod:`dispatcher.web.line_hook`). An address
that is not a user ID is rejected here, without a request: one bad ID would fail the
whole batch with a 400.

The monthly quota (not on the 地方公共団体プラン, ``plan = "municipal"``) is read at
``open`` and every ``quota_refresh_seconds``, counted up locally after each send, and
recorded for operators (:mod:`channels.quota`). A batch that would exceed it is held,
not sent: the channel pauses until the month ends, with a reason saying how much is
used and how to go on (buy more messages, then ``dispatcher channel resume line``:
the quota is read again before the next batch is held). Crossing ``quota_warn_percent``
is logged as a warning once a month.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp

from channels.base import Channel, ChannelContext, Delivered, Health, Reject, Retry, SendResult
from channels.lengths import utf16_units
from channels.line_reply import reply_message
from channels.quota import Quota, next_month
from channels.templates import render_message
from dispatcher.constraints import between, greater_than, http_url, one_of
from dispatcher.model import JST, Alert, Area, Message, Recipient

log = logging.getLogger(__name__)

USER_ID = re.compile(r"U[0-9a-f]{32}")
MAX_TEXT = 5000
# Messages a month each plan includes, until the quota endpoint says otherwise.
PLAN_QUOTA: dict[str, int | None] = {"free": 200, "light": 5000, "standard": 30000, "municipal": None}
MONTHLY_LIMIT = "monthly limit"
# A held batch reads the quota again first if the last reading is older than this.
REREAD_BEFORE_HOLD = 30.0


@dataclass(frozen=True, slots=True)
class LineConfig:
    """``[channels.line]``: the channel access token, the channel secret, the API and the plan.

    ``token`` (``token_env``) is the long-lived channel access token; ``channel_secret``
    (``channel_secret_env``) checks the webhook's ``X-Line-Signature``; without it the
    webhook ``/hooks/line`` is not served. ``plan``: free, light, standard (monthly
    quotas, read from LINE) or municipal (地方公共団体プラン: no quota, none read).
    """

    token: str = field(repr=False)
    channel_secret: str | None = field(default=None, repr=False)
    base_url: str = field(default="https://api.line.me", metadata=http_url())
    plan: str = field(default="standard", metadata=one_of("free", "light", "standard", "municipal"))
    quota_warn_percent: float = field(default=80.0, metadata=between(1, 100))
    quota_refresh_seconds: float = field(default=300.0, metadata=greater_than(0))
    # A 429 rate limit without Retry-After (LINE sends none) pauses this long.
    rate_limit_wait: float = field(default=1.0, metadata=greater_than(0))
    timeout: float = field(default=10.0, metadata=greater_than(0))

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("token is empty")


class LineChannel(Channel):
    """Multicasts each alert to the residents who follow the city's LINE account (module docstring)."""

    name: ClassVar[str] = "line"
    config_class: ClassVar[type[LineConfig]] = LineConfig
    config: LineConfig
    # UTF-16 code units per text message (channels.lengths.utf16_units).
    max_text_length: ClassVar[int] = MAX_TEXT
    batch_size: ClassVar[int] = 500
    # Multicast: 200 requests a second per channel; stay under it.
    rate_per_second: ClassVar[float] = 150.0
    durable_batch_keys: ClassVar[bool] = True

    def __init__(self, config: LineConfig, context: ChannelContext) -> None:
        super().__init__(config, context)
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self.quota: Quota | None = None
        self._warned_month: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"LineChannel(base_url={self.config.base_url!r}, plan={self.config.plan!r})"

    def remaining_quota(self) -> int | None:
        """Messages left this month as last read and counted (None: unmetered or not read yet):
        the dashboard's channel health shows it."""
        return self.quota.remaining if self.quota is not None and self.metered else None

    @property
    def metered(self) -> bool:
        """Whether the plan has a monthly quota (not the 地方公共団体プラン)."""
        return self.config.plan != "municipal"

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.token}"}

    def measure(self, text: str) -> int:
        return utf16_units(text)

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        """Read the quota (a failure is logged; the plan's own figure stands in; municipal: none, no request)."""
        await self.refresh_quota()

    async def healthcheck(self) -> Health:
        """``GET /v2/bot/info``: LINE answers and the token is valid."""
        try:
            async with self.http.get(self._url("/v2/bot/info"), headers=self._headers(), timeout=self._timeout) as r:
                body = await r.json(content_type=None) if r.status == 200 else {}
                detail = str(body.get("basicId", "")) if isinstance(body, dict) else ""
                return Health(ok=r.status == 200, detail=detail or f"bot info {r.status}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return Health(ok=False, detail=f"{type(exc).__name__}: {exc}")

    # -- quota ---------------------------------------------------------------

    async def _get(self, path: str) -> Any:
        async with self.http.get(self._url(path), headers=self._headers(), timeout=self._timeout) as r:
            if r.status != 200:
                raise ValueError(f"{path} answered {r.status}")
            return await r.json(content_type=None)

    async def refresh_quota(self) -> Quota:
        """Read ``/quota`` and ``/quota/consumption`` now; record and return the reading.

        On the municipal plan nothing is read. When LINE cannot be read the last reading
        (or the plan's own figure) stands, and a warning is logged.
        """
        plan = self.config.plan
        if not self.metered:
            quota = Quota(plan, None, 0, time.time())
        else:
            try:
                limit_body = await self._get("/v2/bot/message/quota")
                used_body = await self._get("/v2/bot/message/quota/consumption")
                limit = int(limit_body["value"]) if limit_body.get("type") == "limited" else None
                quota = Quota(plan, limit, int(used_body.get("totalUsage", 0)), time.time())
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("LINE quota unreadable", extra={"channel": self.name, "error": str(exc)})
                if self.quota is not None:
                    return self.quota
                # The plan's own figure until LINE answers; asked again in half a minute.
                quota = Quota(plan, PLAN_QUOTA.get(plan), 0, time.time() - self.config.quota_refresh_seconds + 30)
        await self._record(quota)
        return quota

    async def _record(self, quota: Quota) -> None:
        self.quota = quota
        book = self.context.quotas
        if book is not None:
            try:
                await book.record(self.name, quota)
            except Exception as exc:  # the figure is for people; a send must not fail for it
                log.warning("LINE quota not recorded", extra={"channel": self.name, "error": str(exc)})

    async def _check_quota(self, messages: int) -> Retry | None:
        """None when ``messages`` more fit this month's quota; else the hold (logged, recorded)."""
        if not self.metered:
            return None
        quota = self.quota
        if quota is None or time.time() - quota.read_at > self.config.quota_refresh_seconds:
            quota = await self.refresh_quota()
        if quota.would_exceed(messages) and time.time() - quota.read_at > REREAD_BEFORE_HOLD:
            # Perhaps more messages were bought and an operator resumed the channel.
            quota = await self.refresh_quota()
        now = datetime.now(UTC)
        if quota.would_exceed(messages):
            until = next_month(now)
            reason = (
                f"LINE monthly quota would be exceeded: {quota.used:,} of {quota.limit:,} messages used"
                f" (plan {quota.plan}), this batch needs {messages:,}; held until {until:%Y-%m-%d %H:%M} JST."
                " Add messages (or change the plan), then `dispatcher channel resume line`"
            )
            if quota.held is None:
                log.error("LINE quota would be exceeded; sends held", extra={"channel": self.name, "reason": reason})
                await self._record(Quota(quota.plan, quota.limit, quota.used, quota.read_at, reason))
            return Retry(reason, after=max(1.0, (until - now).total_seconds()), rate_limited=True)
        share = quota.share(messages)
        local = now.astimezone(JST)
        month = (local.year, local.month)
        if share is not None and share * 100 >= self.config.quota_warn_percent and self._warned_month != month:
            self._warned_month = month
            log.warning(
                "LINE monthly quota nearly spent",
                extra={
                    "channel": self.name,
                    "used": quota.used,
                    "quota": quota.limit,
                    "batch": messages,
                    "percent": round(share * 100, 1),
                },
            )
        return None

    async def _count(self, messages: int) -> None:
        quota = self.quota
        if quota is not None and self.metered:
            await self._record(Quota(quota.plan, quota.limit, quota.used + messages, quota.read_at))

    # -- messages ------------------------------------------------------------

    def render(self, alert: Alert, language: str, place: Area | None = None) -> Message:
        """The template text within 5,000 UTF-16 code units: the body is shortened, never the instruction or link."""
        limit = MAX_TEXT
        while True:
            message = render_message(
                self.context.templates,
                alert,
                language,
                max_length=limit,
                public_url=self.context.public_url,
                place=place,
            )
            excess = utf16_units(message.text) - MAX_TEXT
            if excess <= 0 or limit <= 200:
                return message
            limit -= excess

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> Mapping[int, SendResult]:
        """One multicast of ``message`` to every recipient with a valid user ID; a bot reply: reply or push."""
        reply = message.extra.get("reply")
        if isinstance(reply, Mapping):
            return {r.delivery_id: await self._reply(message, reply, r) for r in recipients}
        results: dict[int, SendResult] = {}
        valid: list[Recipient] = []
        for r in recipients:
            if USER_ID.fullmatch(r.address):
                valid.append(r)
            else:
                results[r.delivery_id] = Reject("not a LINE user ID (U + 32 hex digits)", unsubscribe=True)
        if not valid:
            return results
        held = await self._check_quota(len(valid))
        if held is not None:
            results.update({r.delivery_id: held for r in valid})
            return results
        result = await self._multicast(message, [r.address for r in valid])
        if isinstance(result, Delivered):
            # A 409 too: the attempt LINE accepted was answered with an error, not counted.
            await self._count(len(valid))
        elif isinstance(result, Retry) and MONTHLY_LIMIT in result.reason.lower() and self.quota is not None:
            q = self.quota
            log.error("LINE says the monthly limit is reached", extra={"channel": self.name, "reason": result.reason})
            await self._record(Quota(q.plan, q.limit, max(q.used, q.limit or 0), q.read_at, result.reason))
        results.update({r.delivery_id: result for r in valid})
        return results

    async def _multicast(self, message: Message, to: list[str]) -> SendResult:
        key = message.idempotency_key
        extra = {"X-Line-Retry-Key": key} if key and _is_uuid(key) else {}
        body = {"to": to, "messages": [{"type": "text", "text": message.text}]}
        status, payload, headers = await self._post("/v2/bot/message/multicast", body, extra)
        return self._answer(status, payload, headers)

    async def _reply(self, message: Message, reply: Mapping[str, Any], recipient: Recipient) -> SendResult:
        """A bot's reply: with the event's reply token if it has one (free), else a push (counted)."""
        if not USER_ID.fullmatch(recipient.address):
            return Reject("not a LINE user ID (U + 32 hex digits)", unsubscribe=True)
        bundled = reply.get("more")
        payloads = [reply, *(bundled if isinstance(bundled, list) else [])][:5]
        try:
            messages = [reply_message(p, message.language) for p in payloads if isinstance(p, Mapping)]
        except ValueError as exc:
            return Reject(f"reply not sendable on LINE: {exc}")
        token = reply.get("reply_token")
        if isinstance(token, str) and token:
            body = {"replyToken": token, "messages": messages}
            status, payload, headers = await self._post("/v2/bot/message/reply", body, {})
            if status == 200:
                return Delivered(headers.get("x-line-request-id"), "reply")
            if not (status == 400 and "reply token" in str(payload.get("message", "")).lower()):
                return self._answer(status, payload, headers)
            # Expired or used: the person still gets the answer, as a push.
        held = await self._check_quota(1)
        if held is not None:
            return held
        key = message.idempotency_key
        extra = {"X-Line-Retry-Key": key} if key and _is_uuid(key) else {}
        status, payload, headers = await self._post(
            "/v2/bot/message/push", {"to": recipient.address, "messages": messages}, extra
        )
        result = self._answer(status, payload, headers)
        if isinstance(result, Delivered):
            await self._count(1)
        return result

    async def _post(
        self, path: str, body: Mapping[str, Any], extra: Mapping[str, str]
    ) -> tuple[int, dict[str, Any], Mapping[str, str]]:
        """POST ``body``; (status, JSON body, headers); a connection failure is status 0."""
        try:
            async with self.http.post(
                self._url(path), json=body, headers={**self._headers(), **extra}, timeout=self._timeout
            ) as r:
                try:
                    payload = await r.json(content_type=None)
                except ValueError:
                    payload = {}
                return r.status, payload if isinstance(payload, dict) else {}, r.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 0, {"message": f"connection: {type(exc).__name__}: {exc}"}, {}

    def _answer(self, status: int, payload: dict[str, Any], headers: Mapping[str, str]) -> SendResult:
        if status == 200:
            return Delivered(headers.get("x-line-request-id"))
        if status == 409:
            # The retry key was accepted before: the earlier attempt reached everyone.
            return Delivered(headers.get("x-line-accepted-request-id"), "accepted before (409 on the retry key)")
        text = str(payload.get("message", ""))
        details = payload.get("details")
        if isinstance(details, list) and details:
            text += " (" + "; ".join(f"{d.get('property', '')}: {d.get('message', '')}" for d in details) + ")"
        reason = f"line {status} {text}".strip()
        if status == 0:
            return Retry(f"line {text}")
        if status == 429 and MONTHLY_LIMIT in text.lower():
            until = next_month(datetime.now(UTC))
            return Retry(
                f"{reason}: held until {until:%Y-%m-%d %H:%M} JST; add messages, then `dispatcher channel resume line`",
                after=max(1.0, (until - datetime.now(UTC)).total_seconds()),
                rate_limited=True,
            )
        if status == 429:
            return Retry(reason, after=_retry_after(headers) or self.config.rate_limit_wait, rate_limited=True)
        if status >= 500 or status in (401, 403, 408):
            return Retry(reason)
        return Reject(reason)


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
