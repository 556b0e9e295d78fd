"""Webhook: POST each alert as signed JSON to partner systems.

The body carries CAP 1.2 fields (https://docs.oasis-open.org/emergency/cap/v1.2/CAP-v1.2.html)
in JSON plus the rendered ``text`` and ``link``. Requests are signed like GitHub's
and Stripe's webhooks (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries):
``X-Signature-256: sha256=<hex HMAC-SHA256(secret, "<X-Timestamp>.<raw body>")>``;
receivers check it with :func:`dispatcher.signing.verify_signature` and reject stale timestamps.
``Idempotency-Key`` lets receivers drop the duplicate an at-least-once retry can
cause. HTTP semantics: RFC 9110 (https://www.rfc-editor.org/rfc/rfc9110), 429: RFC 6585.

Answers: 2xx → ``Delivered``; 429 → ``Retry(rate_limited=True, after=Retry-After)``;
5xx → ``Retry(after=Retry-After or None)``; 410 Gone → ``Reject(unsubscribe=True)``;
other 3xx/4xx → ``Reject``; connection errors and timeouts → ``Retry``. Redirects
are not followed: a signed alert goes only where it was configured to go. Requests
go out on the service's shared HTTP session (:attr:`channels.base.Channel.http`) with
this channel's own timeout and ``User-Agent``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import aiohttp

from channels.base import Channel, ChannelContext, Delivered, Health, Reject, Retry, SendResult
from dispatcher.constraints import greater_than, http_url, signing_secret
from dispatcher.model import Alert, Area, Message, Recipient
from dispatcher.signing import sign

USER_AGENT = "numazu-dispatcher-webhook/0.1"
# Receivers tell our requests by their agent, on the session shared with other channels too.
_HEADERS = {"User-Agent": USER_AGENT}
# The common answers, built once (results are immutable).
_DELIVERED = {status: Delivered(remote_id=None, detail=f"HTTP {status}") for status in (200, 201, 202, 204)}


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """``[channels.webhook]``: default endpoint and the shared signing secret."""

    url: str = field(metadata=http_url())
    # The HMAC-SHA256 key partners verify our signature with: at least 32 bytes.
    secret: str = field(repr=False, metadata=signing_secret())
    timeout: float = field(default=10.0, metadata=greater_than(0))

    def __post_init__(self) -> None:
        # Messages name no section: the loader adds "[channels.webhook]" and the file.
        if not _is_url(self.url):
            raise ValueError(f"url must be an http(s) URL, not {self.url!r}")
        if not self.secret:
            raise ValueError("secret is empty")


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def alert_payload(alert: Alert) -> dict[str, Any]:
    """The CAP-like JSON fields of ``alert`` (everything JSON-serialisable)."""
    return {
        "identifier": alert.identifier,
        "sender": alert.sender,
        "sent": _iso(alert.sent),
        "status": str(alert.status),
        "msg_type": str(alert.msg_type),
        "event": alert.event,
        "severity": str(alert.severity),
        "urgency": str(alert.urgency),
        "certainty": str(alert.certainty),
        "headline": alert.headline,
        "description": alert.description,
        "instruction": alert.instruction,
        "areas": [{"description": a.description, "codes": list(a.codes)} for a in alert.areas],
        "expires": _iso(alert.expires),
        "references": list(alert.references),
    }


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parse ``Retry-After``: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class WebhookChannel(Channel):
    """One signed POST per alert to each configured endpoint."""

    name: ClassVar[str] = "webhook"
    config_class: ClassVar[type[WebhookConfig]] = WebhookConfig
    config: WebhookConfig
    max_text_length: ClassVar[int] = 20000
    rate_per_second: ClassVar[float] = 50.0
    broadcast: ClassVar[bool] = True
    # A partner's endpoint answers 2xx and names nothing: reconcile has no id to expect.
    remote_ids: ClassVar[bool] = False

    def __init__(self, config: WebhookConfig, context: ChannelContext) -> None:
        super().__init__(config, context)
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self._last_signature: tuple[tuple[str, bytes], str] | None = None

    def __repr__(self) -> str:
        return f"WebhookChannel(url={self.config.url!r})"

    def _signature(self, timestamp: str, body: bytes) -> str:
        # Every recipient of a message gets the same body, and the timestamp
        # changes once a second: sign each (timestamp, body) pair once.
        key = (timestamp, body)
        if self._last_signature is None or self._last_signature[0] != key:
            self._last_signature = (key, sign(self.config.secret, timestamp, body))
        return self._last_signature[1]

    async def healthcheck(self) -> Health:
        """HEAD the default endpoint: any HTTP answer means it is reachable."""
        try:
            async with self.http.head(
                self.config.url, allow_redirects=False, headers=_HEADERS, timeout=self._timeout
            ) as response:
                return Health(ok=response.status < 500, detail=f"HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Health(ok=False, detail=f"{type(exc).__name__}: {exc}")

    def render(self, alert: Alert, language: str, place: Area | None = None) -> Message:
        """Template text plus the alert's CAP fields in ``extra["alert"]``."""
        message = super().render(alert, language, place)
        rendered = Message(
            text=message.text,
            language=message.language,
            subject=message.subject,
            link=message.link,
            exercise=message.exercise,
            extra={**message.extra, "alert": alert_payload(alert)},
        )
        # The body is the same for every recipient of this message: encode it once.
        return replace(rendered, extra={**rendered.extra, "body": self.body(rendered)})

    def body(self, message: Message) -> bytes:
        """The JSON document POSTed for ``message``."""
        cached = message.extra.get("body")
        if isinstance(cached, bytes):
            return cached
        payload = dict(message.extra.get("alert") or {})
        payload.update(language=message.language, text=message.text, link=message.link)
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    async def send_one(self, message: Message, recipient: Recipient) -> SendResult:
        """One signed POST: to the recipient's address if it is a URL, else to the configured URL."""
        body = self.body(message)
        own_url = _is_url(recipient.address)
        url = recipient.address if own_url else self.config.url
        timestamp = str(int(time.time()))
        headers = {
            **_HEADERS,
            "Content-Type": "application/json; charset=utf-8",
            "X-Timestamp": timestamp,
            "X-Signature-256": self._signature(timestamp, body),
        }
        if message.idempotency_key:
            headers["Idempotency-Key"] = message.idempotency_key
        try:
            async with self.http.post(
                url, data=body, headers=headers, allow_redirects=False, timeout=self._timeout
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After") if status >= 300 else None
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # asyncio.TimeoutError is TimeoutError on 3.11+.
            return Retry(reason=f"webhook connection: {type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return _DELIVERED.get(status) or Delivered(remote_id=None, detail=f"HTTP {status}")
        after = retry_after_seconds(retry_after)
        if status == 429:
            # A per-subscriber endpoint's limit concerns only that endpoint.
            return Retry(
                reason="webhook HTTP 429",
                after=after,
                rate_limited=True,
                bucket=recipient.address if own_url else None,
            )
        if status >= 500:
            return Retry(reason=f"webhook HTTP {status}", after=after)
        # 410 Gone: the receiver retired the endpoint on purpose.
        return Reject(reason=f"webhook HTTP {status}", unsubscribe=status == 410)
