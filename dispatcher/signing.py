"""The webhook signature both directions use: what we send (channels/webhook.py), what we receive (broadcasts).

GitHub and Stripe style (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries):
``X-Signature-256: sha256=<hex HMAC-SHA256(secret, "<X-Timestamp>.<raw body>")>``, the
timestamp being Unix seconds, so a receiver can refuse stale requests. A leaf: it
imports nothing of ours, so sources and channels may both use it.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Signature-256`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify_signature(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """Check an ``X-Signature-256`` header in constant time."""
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), header.strip().encode())
