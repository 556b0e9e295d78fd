"""``POST /hooks/broadcast``: the broadcast console pushes each broadcast as it airs.

Authentication is the scheme of ``dispatcher/signing.py``, the one ``channels/webhook.py``
signs what we send with (GitHub and Stripe style,
https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries):
``X-Timestamp: <unix seconds>`` and ``X-Signature-256: sha256=<hex HMAC-SHA256(secret,
"<X-Timestamp>.<raw body>")>``, compared in constant time. A timestamp more than
``max_skew_seconds`` (300) away from our clock, either way, is refused, and a broadcast
already received (same sender and identifier: a ``documents`` row claimed under a unique
constraint, then the ``alerts`` unique constraint) is a replay.

Every answer is JSON ``{"status": ..., "reason": ...}`` (RFC 9110 status codes,
https://www.rfc-editor.org/rfc/rfc9110#section-15):

    202 accepted            {"alert_id", "held", "deliveries", "unknown_groups"}
    400 malformed body      what is wrong with it
    401 unauthorized        missing / malformed / wrong signature, or a stale timestamp
                            ("error": "bad_signature" | "stale_timestamp"): a stale request is
                            an authentication failure like Stripe's, not a 408, which
                            means the *server* gave up waiting
    403 forbidden           the CAP sender is not in the allow-list
    409 conflict            replay: this sender and identifier were already received (the
                            claim commits with the alert, so a broadcast that failed to be
                            stored is accepted when sent again)
    413 too large           body over ``max_body_bytes``
    415 unsupported type    Content-Type is not CAP XML or JSON
    503 unavailable         the database did not take it within about a second; retry with
                            the same body (nothing was claimed)

Each rejection is logged in one line with its reason (never the secret or the signature).
The raw body of an accepted broadcast is stored in ``documents`` (source ``broadcast``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from dispatcher.model import Document
from dispatcher.signing import verify_signature
from sources.base import SourceContext
from sources.broadcast.mapping import SOURCE, BroadcastPolicy, to_alert
from sources.broadcast.parse import BodyError, media_type, parse_body, supported

log = logging.getLogger(__name__)

PATH = "/hooks/broadcast"


def _is_db_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the database client (without importing it here)."""
    return type(exc).__module__.startswith("asyncpg")


class BroadcastWebhook:
    """The pushed source: one route, signed bodies in, alerts out through ``ctx.emit``."""

    name = "broadcast-webhook"

    def __init__(
        self,
        *,
        secret: str,
        policy: BroadcastPolicy,
        default_sender: str,
        senders: Sequence[str] = (),
        max_body_bytes: int = 256 * 1024,
        max_skew_seconds: float = 300.0,
    ) -> None:
        if not secret:
            raise ValueError("the broadcast webhook needs a secret")
        self._secret = secret
        self.policy = policy
        self.default_sender = default_sender
        self.senders = frozenset(senders)
        self.max_body_bytes = max_body_bytes
        self.max_skew_seconds = max_skew_seconds

    def __repr__(self) -> str:
        return f"BroadcastWebhook(path={PATH!r}, senders={sorted(self.senders)!r})"

    def routes(self, ctx: SourceContext) -> list[Any]:
        async def handler(request: web.Request) -> web.Response:
            return await self.handle(request, ctx)

        return [web.post(PATH, handler)]

    def _reject(self, request: web.Request, status: int, error: str, reason: str, **extra: Any) -> web.Response:
        log.warning(
            "broadcast rejected: %s",
            reason,
            extra={"source": SOURCE, "http_status": status, "error": error, "peer": request.remote or "", **extra},
        )
        return web.json_response({"status": "rejected", "error": error, "reason": reason}, status=status)

    async def _read(self, request: web.Request) -> bytes | None:
        """The body, or None when it exceeds the limit (read no further than that)."""
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return None
        # read(n) returns what has arrived so far: a body in several segments needs a loop.
        chunks: list[bytes] = []
        size = 0
        while size <= self.max_body_bytes:
            chunk = await request.content.read(self.max_body_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > self.max_body_bytes:
            return None
        return b"".join(chunks)

    async def handle(self, request: web.Request, ctx: SourceContext) -> web.Response:
        content_type = request.headers.get("Content-Type", "")
        if not supported(content_type):
            return self._reject(
                request,
                415,
                "unsupported_media_type",
                f"Content-Type {media_type(content_type) or '(none)'!r} is not application/cap+xml, "
                "application/xml or application/json",
            )
        body = await self._read(request)
        if body is None:
            return self._reject(request, 413, "too_large", f"body exceeds {self.max_body_bytes} bytes")
        timestamp = request.headers.get("X-Timestamp", "").strip()
        signature = request.headers.get("X-Signature-256", "")
        if not timestamp or not signature:
            return self._reject(request, 401, "bad_signature", "X-Timestamp and X-Signature-256 headers are required")
        if not verify_signature(self._secret, timestamp, body, signature):
            return self._reject(request, 401, "bad_signature", "signature does not match the body and timestamp")
        try:
            skew = time.time() - int(timestamp)
        except ValueError:
            return self._reject(request, 401, "bad_signature", "X-Timestamp must be Unix seconds")
        if abs(skew) > self.max_skew_seconds:
            return self._reject(
                request,
                401,
                "stale_timestamp",
                f"X-Timestamp is {skew:+.0f} s from the server clock (allowed ±{self.max_skew_seconds:.0f} s)",
            )
        try:
            broadcast = parse_body(body, content_type, default_sender=self.default_sender)
        except BodyError as exc:
            return self._reject(request, 400, "malformed", str(exc))
        if self.senders and broadcast.sender not in self.senders:
            return self._reject(request, 403, "sender_not_allowed", f"sender {broadcast.sender!r} is not allowed")
        key = f"urn:broadcast:{broadcast.sender}:{broadcast.identifier}"
        ids = {"identifier": broadcast.identifier, "sender": broadcast.sender}
        mapped = to_alert(broadcast, self.policy)
        document = Document(SOURCE, key, content=body, kind=broadcast.kind, title=broadcast.text[:200])
        try:
            # The claim of (sender, identifier), the alert and its deliveries commit
            # together or not at all: after any failure the same broadcast is
            # accepted when it is sent again.
            result = await ctx.emit(mapped.alert, document=document, hold=mapped.hold, patient=False)
        except ValueError as exc:  # dispatcher.validate.InvalidAlert: a value we cannot store
            return self._reject(request, 400, "malformed", str(exc), **ids)
        except Exception as exc:
            # The database is away (ctx.emit already waited a little); a bug is logged with its traceback.
            log.warning(
                "broadcast not stored: database unavailable",
                exc_info=not isinstance(exc, OSError | ConnectionError | TimeoutError) and not _is_db_error(exc),
                extra={"source": SOURCE, "error": f"{type(exc).__name__}: {exc}", **ids},
            )
            return web.json_response(
                {"status": "error", "error": "unavailable", "reason": "not stored; retry later"}, status=503
            )
        outcome = str(result.outcome)
        alert_id = result.alert_id
        if outcome in ("replay", "duplicate"):
            return self._reject(request, 409, "replay", "this sender and identifier were already received", **ids)
        if mapped.unknown_groups:
            log.warning(
                "broadcast names unknown loudspeaker groups: %s",
                ", ".join(mapped.unknown_groups),
                extra={"source": SOURCE, "alert_id": alert_id, **ids},
            )
        held = outcome == "held"
        log.info(
            "broadcast accepted",
            extra={"source": SOURCE, "alert_id": alert_id, "held": held, "format": broadcast.kind, **ids},
        )
        answer: dict[str, Any] = {
            "status": "accepted",
            "alert_id": alert_id,
            "held": held,
            "deliveries": result.deliveries,
            "unknown_groups": list(mapped.unknown_groups),
        }
        if held:
            answer["reason"] = mapped.held_because
        return web.json_response(answer, status=202)
