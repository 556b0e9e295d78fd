"""A local stand-in for a Bluesky PDS (AT Protocol XRPC), for the demo, tests and benchmarks.

It speaks XRPC as https://atproto.com/specs/xrpc defines it, with the lexicons of
https://github.com/bluesky-social/atproto/tree/main/lexicons: ``POST /xrpc/`` +
``com.atproto.server.createSession`` (identifier and app password → ``accessJwt``,
``refreshJwt``, ``did``, ``handle``), ``com.atproto.server.refreshSession`` (Bearer
refresh token; the old one is revoked), ``com.atproto.repo.createRecord`` for
``app.bsky.feed.post`` (answering ``uri``, ``cid``, ``commit``),
``com.atproto.repo.deleteRecord`` and ``GET /xrpc/com.atproto.repo.getRecord``.
Errors are ``{"error": <name>, "message": ...}``: an expired access token is 400
``ExpiredToken`` and an unverifiable one 400 ``InvalidToken``, as the PDS answers them.

A post is validated as the lexicon says: ``text`` at most 300 grapheme clusters and
3,000 UTF-8 bytes, ``createdAt`` a datetime, ``reply`` with ``root`` and ``parent``
strong refs, ``facets`` with ``byteStart``/``byteEnd`` byte offsets. Stricter than the
real PDS, which only checks that offsets are non-negative integers and would publish a
link on the wrong words: here a facet must lie on UTF-8 character boundaries within the
text, and a link facet must cover its URL (as written, or without its scheme, or
shortened with "..."), else 400 ``InvalidRequest``; turn ``strict_facets`` off for the
real behaviour.

Limits, from https://docs.bsky.app/docs/advanced-guides/rate-limits: createSession 30
per 5 minutes and 300 a day per account; writes cost points (create 3, delete 1), 5,000
per hour and 35,000 a day per account; 3,000 requests per 5 minutes per IP. Windows
start at their first request, as the PDS's rate-limiter-flexible counts them; answers
carry ``RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (epoch seconds) / ``-Policy``
(``30;w=300``) for the tightest limit, and a spent one is 429 ``RateLimitExceeded``.

``python -m dispatcher.standins.bluesky --handle H --password P`` prints its base_url
(for ``https://bsky.social``) and serves until SIGTERM; ``GET /_standin/stats`` reports.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from dispatcher.standins.base import Budget, FixedWindow, StandInServer, bearer, cli_main, json_body, take_all, tightest
from dispatcher.standins.lengths import grapheme_count

POST = "app.bsky.feed.post"
MAX_GRAPHEMES = 300
MAX_BYTES = 3000
LINK = "app.bsky.richtext.facet#link"
ERROR_NAMES = {
    500: ("InternalServerError", "Internal Server Error"),
    502: ("UpstreamFailure", "Upstream Failure"),
    503: ("NotEnoughResources", "Not Enough Resources"),
    504: ("UpstreamTimeout", "Upstream Timeout"),
}
_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_TID = "234567abcdefghijklmnopqrstuvwxyz"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cid_for(value: Any) -> str:
    """A CIDv1 (dag-cbor, sha-256) string for ``value``; hashed over JSON, not DAG-CBOR."""
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).digest()
    raw = bytes([0x01, 0x71, 0x12, 0x20]) + digest
    bits = "".join(f"{b:08b}" for b in raw)
    return "b" + "".join(_B32[int(bits[i : i + 5].ljust(5, "0"), 2)] for i in range(0, len(bits), 5))


class FacetError(ValueError):
    """A facet that does not point where it says."""


def check_facets(text: str, facets: Any) -> None:
    """Raise ValueError when ``facets`` do not fit the lexicon, FacetError when they miss their text."""
    if not isinstance(facets, list):
        raise ValueError("Record/facets must be an array")
    data = text.encode()
    for i, facet in enumerate(facets):
        index = facet.get("index") if isinstance(facet, dict) else None
        features = facet.get("features") if isinstance(facet, dict) else None
        start = index.get("byteStart") if isinstance(index, dict) else None
        end = index.get("byteEnd") if isinstance(index, dict) else None
        if not isinstance(start, int) or not isinstance(end, int) or start < 0 or end < 0:
            raise ValueError(f"Record/facets/{i}/index must have non-negative integer byteStart and byteEnd")
        if not isinstance(features, list) or not all(isinstance(f, dict) and "$type" in f for f in features):
            raise ValueError(f"Record/facets/{i}/features must be an array of typed objects")
        if not start < end <= len(data):
            raise FacetError(f"Record/facets/{i}/index: bytes {start}..{end} are not within the text")
        try:
            covered = data[start:end].decode()
        except UnicodeDecodeError:
            raise FacetError(f"Record/facets/{i}/index: bytes {start}..{end} split a UTF-8 character") from None
        for feature in features:
            if feature["$type"] == LINK:
                uri = feature.get("uri")
                if not isinstance(uri, str) or "://" not in uri:
                    raise ValueError(f"Record/facets/{i}/features must have a uri")
                bare = uri.split("://", 1)[1]
                shortened = covered.endswith("...") and bare.startswith(covered[:-3])
                if covered not in (uri, bare) and not shortened:
                    raise FacetError(f"Record/facets/{i}: bytes {start}..{end} are {covered!r}, not the link {uri}")


def check_post(record: Any, *, strict_facets: bool = True) -> None:
    """Raise ValueError with the validator's wording when ``record`` is not a valid post."""
    if not isinstance(record, dict):
        raise ValueError("Record must be an object")
    if record.get("$type") != POST:
        raise ValueError(f"Invalid $type: expected {POST}, got {record.get('$type')}")
    text = record.get("text")
    if not isinstance(text, str):
        raise ValueError('Record must have the property "text"')
    if len(text.encode()) > MAX_BYTES:
        raise ValueError(f"Record/text must not be longer than {MAX_BYTES} characters")
    if grapheme_count(text) > MAX_GRAPHEMES:
        raise ValueError(f"Record/text must not be longer than {MAX_GRAPHEMES} graphemes")
    created = record.get("createdAt")
    try:
        if not isinstance(created, str) or datetime.fromisoformat(created.replace("Z", "+00:00")).tzinfo is None:
            raise ValueError
    except ValueError:
        raise ValueError("Record/createdAt must be an valid atproto datetime (both RFC-3339 and ISO-8601)") from None
    reply = record.get("reply")
    if reply is not None:
        for ref in ("root", "parent"):
            strong = reply.get(ref) if isinstance(reply, dict) else None
            if (
                not isinstance(strong, dict)
                or not str(strong.get("uri", "")).startswith("at://")
                or not strong.get("cid")
            ):
                raise ValueError(f'Record/reply must have the property "{ref}" with a uri and a cid')
    langs = record.get("langs")
    if langs is not None and (not isinstance(langs, list) or len(langs) > 3):
        raise ValueError("Record/langs must not have more than 3 elements")
    if "facets" in record:
        try:
            check_facets(text, record["facets"])
        except FacetError:
            if strict_facets:
                raise


@dataclass(slots=True)
class BskyRecord:
    """One record the stand-in accepted."""

    uri: str
    cid: str
    value: dict[str, Any]
    # time.monotonic() at acceptance.
    at: float
    deleted: bool = False


class BlueskyStandIn(StandInServer):
    """An aiohttp server answering like a PDS (``bsky.social``) for one account."""

    def __init__(
        self,
        handle: str,
        password: str,
        *,
        did: str = "did:plc:numazubousai2024standin",
        strict_facets: bool = True,
        access_ttl: float = 2 * 3600.0,
        refresh_ttl: float = 90 * 86400.0,
        session_limits: tuple[int, int] = (30, 300),
        write_points: tuple[int, int] = (5000, 35000),
        ip_limit: int = 3000,
    ) -> None:
        super().__init__()
        self.handle, self.password, self.did = handle, password, did
        self.strict_facets = strict_facets
        self.access_ttl, self.refresh_ttl = access_ttl, refresh_ttl
        self.records: dict[str, BskyRecord] = {}
        self.sessions_created = 0
        self.points_spent = 0
        self.rate_limited = 0
        self._secret = secrets.token_bytes(32)
        self._revoked: set[str] = set()
        self._access_issued: set[str] = set()
        self._expired: set[str] = set()
        self._last_tid = 0
        self._windows = {
            "ip": FixedWindow("global", ip_limit, 300.0),
            "session-5m": FixedWindow("createSession", session_limits[0], 300.0),
            "session-day": FixedWindow("createSession-day", session_limits[1], 86400.0),
            "write-hour": FixedWindow("repo-write-hour", write_points[0], 3600.0),
            "write-day": FixedWindow("repo-write-day", write_points[1], 86400.0),
        }

    # -- knobs ---------------------------------------------------------------

    def expire_access_tokens(self) -> None:
        """Every access token issued so far has expired: ExpiredToken, refresh to go on."""
        self._expired |= self._access_issued

    def reset(self) -> None:
        super().reset()
        self.records.clear()
        self.sessions_created = self.points_spent = self.rate_limited = 0
        self._revoked.clear()
        self._expired.clear()
        for window in self._windows.values():
            window.clear()

    @property
    def posts(self) -> list[BskyRecord]:
        return [r for r in self.records.values() if not r.deleted]

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/xrpc/com.atproto.server.createSession", self._create_session)
        router.add_post("/xrpc/com.atproto.server.refreshSession", self._refresh_session)
        router.add_post("/xrpc/com.atproto.repo.createRecord", self._create_record)
        router.add_post("/xrpc/com.atproto.repo.deleteRecord", self._delete_record)
        router.add_get("/xrpc/com.atproto.repo.getRecord", self._get_record)

    def provider_stats(self, since: int) -> dict[str, Any]:
        records = list(self.records.values())
        return {
            "rate_limited": self.rate_limited,
            "sessions_created": self.sessions_created,
            "points_spent": self.points_spent,
            "record_count": len(records),
            "records": [{"uri": r.uri, "deleted": r.deleted, "at": r.at} for r in records[since:]],
        }

    # -- protocol ------------------------------------------------------------

    @staticmethod
    def _headers(budget: Budget | None) -> dict[str, str]:
        if budget is None:
            return {}
        return {
            "RateLimit-Limit": str(budget.limit),
            "RateLimit-Remaining": str(budget.remaining),
            "RateLimit-Reset": str(int(budget.reset_at)),
            "RateLimit-Policy": f"{budget.limit};w={int(budget.period)}",
        }

    def _error(
        self, request: web.Request, status: int, error: str, message: str, budget: Budget | None, reason: str = ""
    ) -> web.Response:
        response = web.json_response({"error": error, "message": message}, status=status, headers=self._headers(budget))
        return self.refused(request, response, reason or message)

    def _limit(self, request: web.Request, windows: list[tuple[str, str]], points: int = 1) -> Budget | web.Response:
        """Spend ``points`` in the route's windows and one request in the per-IP one, or nothing.

        The budget reported is the route's tightest, or the per-IP one for routes without
        their own limits; a spent window is the 429.
        """
        spends = [(self._windows[name], key, points) for name, key in windows]
        spends.append((self._windows["ip"], request.remote or "", 1))
        budgets = take_all(spends, self.clock())
        if not all(b.allowed for b in budgets):
            self.rate_limited += 1
            budget = tightest(budgets)
            return self._error(request, 429, "RateLimitExceeded", "Rate Limit Exceeded", budget, "rate limit spent")
        return tightest(budgets[:-1] or budgets)

    def _injected(self, request: web.Request, budget: Budget) -> web.Response | None:
        """The failure a knob queued for this request, if any (the points are spent by then)."""
        injected = self.failures.take()
        if injected is None:
            return None
        if injected.status == 429:
            self.rate_limited += 1
            spent = Budget(budget.name, budget.limit, 0, budget.reset_at, budget.period, False)
            return self._error(request, 429, "RateLimitExceeded", "Rate Limit Exceeded", spent, "injected 429")
        error, message = ERROR_NAMES.get(injected.status, ERROR_NAMES[500])
        return self._error(request, injected.status, error, message, budget, "injected failure")

    def _jwt(self, scope: str, ttl: float) -> str:
        now = self.clock()
        header = {"typ": "at+jwt" if scope == "com.atproto.access" else "refresh+jwt", "alg": "HS256"}
        payload: dict[str, Any] = {"scope": scope, "sub": self.did, "aud": "did:web:bsky.social", "iat": int(now)}
        payload |= {"exp": int(now + ttl), "jti": secrets.token_urlsafe(16)}
        if scope == "com.atproto.access":
            self._access_issued.add(payload["jti"])
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(payload).encode())}"
        signature = hmac.new(self._secret, signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{_b64url(signature)}"

    def _verify(self, request: web.Request, scope: str) -> dict[str, Any] | web.Response:
        token = bearer(request)
        if token is None:
            return self._error(request, 401, "AuthMissing", "Authentication Required", None)
        try:
            signing, _, signature = token.rpartition(".")
            expected = _b64url(hmac.new(self._secret, signing.encode(), hashlib.sha256).digest())
            if not hmac.compare_digest(expected, signature):
                raise ValueError
            encoded = signing.split(".")[1]
            claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        except (ValueError, IndexError):
            return self._error(request, 400, "InvalidToken", "Token could not be verified", None)
        if claims.get("scope") != scope:
            return self._error(request, 400, "InvalidToken", "Bad token scope", None)
        if claims["jti"] in self._revoked:
            return self._error(request, 400, "ExpiredToken", "Token has been revoked", None)
        now = self.clock()
        if now >= claims["exp"] or claims["jti"] in self._expired:
            return self._error(request, 400, "ExpiredToken", "Token has expired", None)
        return claims

    async def _input(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await json_body(request)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._error(request, 400, "InvalidRequest", "Input must be a JSON object", None)
        return body

    def _session(self) -> dict[str, Any]:
        self.sessions_created += 1
        return {
            "accessJwt": self._jwt("com.atproto.access", self.access_ttl),
            "refreshJwt": self._jwt("com.atproto.refresh", self.refresh_ttl),
            "handle": self.handle,
            "did": self.did,
            "active": True,
        }

    async def _create_session(self, request: web.Request) -> web.Response:
        body = await self._input(request)
        if isinstance(body, web.Response):
            return body
        identifier, password = body.get("identifier"), body.get("password")
        if not isinstance(identifier, str) or not isinstance(password, str):
            prop = "identifier" if not isinstance(identifier, str) else "password"
            return self._error(request, 400, "InvalidRequest", f'Input must have the property "{prop}"', None)
        # Counted per account before the password is checked: guessing spends the budget too.
        key = identifier.lower()
        budget = self._limit(request, [("session-5m", key), ("session-day", key)])
        if isinstance(budget, web.Response):
            return budget
        if key not in (self.handle.lower(), self.did) or not hmac.compare_digest(password, self.password):
            return self._error(request, 401, "AuthenticationRequired", "Invalid identifier or password", budget)
        return web.json_response(self._session(), headers=self._headers(budget))

    async def _refresh_session(self, request: web.Request) -> web.Response:
        budget = self._limit(request, [])
        if isinstance(budget, web.Response):
            return budget
        claims = self._verify(request, "com.atproto.refresh")
        if isinstance(claims, web.Response):
            return claims
        self._revoked.add(claims["jti"])
        return web.json_response(self._session(), headers=self._headers(budget))

    def _tid(self) -> str:
        # A TID: 53 bits of microseconds and 10 of clock id, in sortable base32, strictly increasing.
        self._last_tid = max(self._last_tid + 1, int(time.time() * 1_000_000) << 10)
        return "".join(_TID[(self._last_tid >> shift) & 31] for shift in range(60, -5, -5))

    async def _write(
        self, request: web.Request, points: int, act: Callable[[dict[str, Any], Budget], web.Response]
    ) -> web.Response:
        claims = self._verify(request, "com.atproto.access")
        if isinstance(claims, web.Response):
            return claims
        budget = self._limit(request, [("write-hour", self.did), ("write-day", self.did)], points)
        if isinstance(budget, web.Response):
            return budget
        self.points_spent += points
        injected = self._injected(request, budget)
        if injected is not None:
            return injected
        body = await self._input(request)
        if isinstance(body, web.Response):
            return body
        if body.get("repo") not in (self.did, self.handle):
            return self._error(request, 400, "InvalidRequest", f"Could not find repo: {body.get('repo')}", budget)
        if body.get("collection") != POST:
            return self._error(request, 400, "InvalidRequest", f"stand-in: only {POST} is implemented", budget)
        return act(body, budget)

    def _commit(self) -> dict[str, str]:
        rev = self._tid()
        return {"cid": cid_for({"rev": rev}), "rev": rev}

    async def _create_record(self, request: web.Request) -> web.Response:
        def create(body: dict[str, Any], budget: Budget) -> web.Response:
            record = body.get("record")
            try:
                check_post(record, strict_facets=self.strict_facets)
            except ValueError as exc:
                message = f"Invalid {POST} record: {exc}"
                return self._error(request, 400, "InvalidRequest", message, budget)
            rkey = str(body.get("rkey") or self._tid())
            uri = f"at://{self.did}/{POST}/{rkey}"
            if uri in self.records and not self.records[uri].deleted:
                return self._error(request, 400, "InvalidRequest", f"Record already exists: {uri}", budget)
            assert isinstance(record, dict)
            self.records[uri] = BskyRecord(uri, cid_for(record), record, time.monotonic())
            answer = {"uri": uri, "cid": self.records[uri].cid, "commit": self._commit(), "validationStatus": "valid"}
            return web.json_response(answer, headers=self._headers(budget))

        return await self._write(request, 3, create)

    async def _delete_record(self, request: web.Request) -> web.Response:
        def delete(body: dict[str, Any], budget: Budget) -> web.Response:
            record = self.records.get(f"at://{self.did}/{POST}/{body.get('rkey')}")
            # Deleting what is not there is not an error: the PDS answers without a commit.
            if record is None or record.deleted:
                return web.json_response({}, headers=self._headers(budget))
            record.deleted = True
            return web.json_response({"commit": self._commit()}, headers=self._headers(budget))

        return await self._write(request, 1, delete)

    async def _get_record(self, request: web.Request) -> web.Response:
        budget = self._limit(request, [])
        if isinstance(budget, web.Response):
            return budget
        query = request.query
        did = self.did if query.get("repo") in (self.did, self.handle) else query.get("repo")
        uri = f"at://{did}/{query.get('collection')}/{query.get('rkey')}"
        record = self.records.get(uri)
        if record is None or record.deleted:
            return self._error(request, 400, "RecordNotFound", f"Could not locate record: {uri}", budget)
        return web.json_response({"uri": uri, "cid": record.cid, "value": record.value}, headers=self._headers(budget))


# -- standalone ----------------------------------------------------------------


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--handle", default="numazu-bousai.bsky.social")
    parser.add_argument("--password", default="app-password", help="the app password createSession accepts")
    parser.add_argument(
        "--lenient-facets", action="store_true", help="accept facets that miss their text, as the PDS does"
    )


def _build(args: argparse.Namespace) -> BlueskyStandIn:
    return BlueskyStandIn(args.handle, args.password, strict_facets=not args.lenient_facets)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dispatcher.standins.bluesky``."""
    description = "Serve the Bluesky PDS (XRPC) stand-in until SIGTERM; print its base_url first."
    return cli_main("python -m dispatcher.standins.bluesky", description, _arguments, _build, argv)


if __name__ == "__main__":
    sys.exit(main())
