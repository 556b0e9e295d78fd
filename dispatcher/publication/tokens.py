"""Signed links and the anonymous forms' CSRF tokens (itsdangerous, https://itsdangerous.palletsprojects.com/).

A subscriber's unsubscribe and manage links carry the subscription id signed with the
site's key (HMAC-SHA1 by itsdangerous, salted per purpose): unguessable, needing no
account, and checked without a database lookup. The confirmation link of a new
subscription is random instead (its SHA-256 is stored with an expiry), so it can be
used once.

Public forms are anonymous, so there is no session to tie a CSRF token to: the form
carries a *signed double-submit* token (the OWASP pattern,
https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html#signed-double-submit-cookie-recommended):
a random value in a ``SameSite=Strict`` cookie and the same value signed (and
timestamped) in a hidden field; a POST is accepted only when both agree.
"""

from __future__ import annotations

import hashlib
import secrets

from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer

CSRF_COOKIE = "numazu_csrf"
CSRF_MAX_AGE = 2 * 3600


class Links:
    """The signed links of the public site (a :class:`channels.base.SubscriberLinks`)."""

    def __init__(self, public_url: str, secret: bytes) -> None:
        self.public_url = public_url.rstrip("/")
        self._unsubscribe = URLSafeSerializer(secret, salt="unsubscribe")
        self._manage = URLSafeSerializer(secret, salt="manage")
        self._csrf = URLSafeTimedSerializer(secret, salt="csrf")

    def unsubscribe_token(self, subscription_id: int) -> str:
        return str(self._unsubscribe.dumps(subscription_id))

    def manage_token(self, subscription_id: int) -> str:
        return str(self._manage.dumps(subscription_id))

    def unsubscribe_url(self, subscription_id: int) -> str:
        return f"{self.public_url}/unsubscribe?t={self.unsubscribe_token(subscription_id)}"

    def manage_url(self, subscription_id: int) -> str:
        return f"{self.public_url}/subscription?t={self.manage_token(subscription_id)}"

    def subscription_of(self, token: str, purpose: str) -> int | None:
        """The subscription id a link's token names, or None if it was not signed by us."""
        serializer = self._unsubscribe if purpose == "unsubscribe" else self._manage
        try:
            value = serializer.loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    # -- CSRF for anonymous forms -------------------------------------------------

    def csrf_pair(self, cookie: str | None) -> tuple[str, str]:
        """(cookie value, form field): the visitor's cookie kept if it has one."""
        raw = cookie if cookie and 16 <= len(cookie) <= 64 and cookie.isalnum() else secrets.token_hex(16)
        return raw, str(self._csrf.dumps(raw))

    def csrf_ok(self, cookie: str | None, field: str | None) -> bool:
        if not cookie or not field:
            return False
        try:
            value = self._csrf.loads(field, max_age=CSRF_MAX_AGE)
        except BadSignature:
            return False
        return isinstance(value, str) and secrets.compare_digest(value, cookie)


def confirmation_token() -> tuple[str, bytes]:
    """A new confirmation link's token and the hash stored for it."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
