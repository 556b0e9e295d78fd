"""A local stand-in for a Mastodon server's REST API, for the demo, tests and benchmarks.

It speaks the wire format of https://docs.joinmastodon.org/methods/statuses/:
``POST /api/v1/statuses`` (form or JSON: ``status``, ``in_reply_to_id``, ``visibility``,
``language``, ``spoiler_text``, ``sensitive``) answering a Status entity, ``GET`` /
``PUT`` (edit, keeping the edit history at ``/history``) / ``DELETE`` (answering the
status with its source ``text``) ``/api/v1/statuses/:id``, ``GET /api/v2/instance``
(``configuration.statuses.max_characters`` and ``characters_reserved_per_url``, 23)
and ``GET /api/v1/accounts/verify_credentials``. Errors are ``{"error": "..."}``.

``Idempotency-Key`` returns the status created under the same key by the same account
within an hour instead of a second one. Length is counted as Mastodon's
``StatusLengthValidator`` counts it (spoiler text plus text, grapheme clusters, every
URL 23, ``@user@domain`` as ``@user``): over the limit is 422.

Every ``/api`` answer carries ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (an
ISO 8601 time) for the limit closest to being exceeded, from Mastodon's Rack::Attack
throttles (https://docs.joinmastodon.org/api/rate-limits/,
https://github.com/mastodon/mastodon/blob/main/config/initializers/rack_attack.rb):
300 requests per 5 minutes per access token, 1,500 per account, 300 per IP without a
token, 30 deletions per 30 minutes; windows aligned to multiples of their period.
Spent is 429 ``{"error": "Too many requests"}``. A write without a valid Bearer token is 401.

``python -m dispatcher.standins.mastodon --token T`` prints its base_url (for
``https://mastodon.example``) and serves until SIGTERM; ``GET /_standin/stats`` reports.
"""

from __future__ import annotations

import argparse
import html
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import regex
from aiohttp import web

from dispatcher.standins.base import Budget, FixedWindow, StandInServer, bearer, cli_main, take_all, tightest
from dispatcher.standins.lengths import find_urls, grapheme_count, replace_spans

URL_CHARACTERS = 23
VISIBILITIES = ("public", "unlisted", "private", "direct")
# Account::MENTION_RE: @user, optionally @domain, not inside a word or a URL path.
MENTION = regex.compile(r"(?<![=/\w])@(\w+)(?:@[\w.-]+\w)?", regex.IGNORECASE)
IDEMPOTENCY_TTL = 3600.0
_Handler = Callable[[web.Request, str | None, Budget], Awaitable[web.Response]]


def countable_length(text: str, spoiler_text: str = "") -> int:
    """The length Mastodon checks against ``max_characters``."""
    countable = replace_spans(text, find_urls(text), "x" * URL_CHARACTERS)
    countable = MENTION.sub(lambda m: "@" + m.group(1), countable)
    return grapheme_count(spoiler_text + countable)


def _iso(at: float, timespec: str = "milliseconds") -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def _html(text: str) -> str:
    """Mastodon's plain-text formatting: paragraphs, line breaks, linked URLs."""

    def link(url: str) -> str:
        return f'<a href="{url}" rel="nofollow noopener" target="_blank">{url}</a>'

    paragraphs = []
    for paragraph in text.strip().split("\n\n"):
        spans = find_urls(paragraph)
        pieces, last = [], 0
        for start, end in spans:
            pieces.append(html.escape(paragraph[last:start]))
            pieces.append(link(html.escape(paragraph[start:end])))
            last = end
        pieces.append(html.escape(paragraph[last:]))
        paragraphs.append("<p>" + "".join(pieces).replace("\n", "<br />") + "</p>")
    return "".join(paragraphs)


@dataclass(slots=True)
class Toot:
    """One status the stand-in accepted, with its edits."""

    id: str
    text: str
    spoiler_text: str
    visibility: str
    language: str | None
    sensitive: bool
    in_reply_to_id: str | None
    idempotency_key: str | None
    created_at: float
    edited_at: float | None = None
    deleted: bool = False
    # (text, spoiler_text, sensitive, at) of every version, oldest first, once edited.
    versions: list[tuple[str, str, bool, float]] = field(default_factory=list)


class MastodonStandIn(StandInServer):
    """An aiohttp server answering like one Mastodon server for one account.

    ``token=None`` accepts any Bearer token as that account. ``max_characters`` is
    the instance's limit (500, as on mastodon.social).
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        username: str = "numazu_bousai",
        domain: str = "mastodon.example",
        max_characters: int = 500,
        token_limit: int = 300,
        account_limit: int = 1500,
        ip_limit: int = 300,
        delete_limit: int = 30,
    ) -> None:
        super().__init__()
        self.token = token
        self.username = username
        self.domain = domain
        self.max_characters = max_characters
        self.token_revoked = False
        self.toots: dict[str, Toot] = {}
        self.rate_limited = 0
        self._by_key: dict[str, tuple[str, float]] = {}
        self._last_id = 0
        self._windows = {
            "token": FixedWindow("throttle_per_token_api", token_limit, 300.0, aligned=True),
            "account": FixedWindow("throttle_authenticated_api", account_limit, 300.0, aligned=True),
            "ip": FixedWindow("throttle_unauthenticated_api", ip_limit, 300.0, aligned=True),
            "delete": FixedWindow("throttle_api_delete", delete_limit, 1800.0, aligned=True),
        }

    # -- knobs ---------------------------------------------------------------

    def revoke_token(self) -> None:
        """The access token was revoked: 401 from now on."""
        self.token_revoked = True

    def reset(self) -> None:
        super().reset()
        self.toots.clear()
        self.rate_limited = 0
        self._by_key.clear()
        for window in self._windows.values():
            window.clear()

    @property
    def posted(self) -> list[Toot]:
        """Statuses not deleted, oldest first."""
        return [t for t in self.toots.values() if not t.deleted]

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/v1/statuses", self._route(self._create, write=True))
        router.add_get("/api/v1/statuses/{id}", self._route(self._show))
        router.add_put("/api/v1/statuses/{id}", self._route(self._edit, write=True))
        router.add_delete("/api/v1/statuses/{id}", self._route(self._delete, write=True))
        router.add_get("/api/v1/statuses/{id}/history", self._route(self._history))
        router.add_get("/api/v2/instance", self._route(self._instance))
        router.add_get("/api/v1/accounts/verify_credentials", self._route(self._verify_credentials))

    def provider_stats(self, since: int) -> dict[str, Any]:
        toots = list(self.toots.values())
        return {
            "rate_limited": self.rate_limited,
            "status_count": len(toots),
            "statuses": [
                {"id": t.id, "deleted": t.deleted, "edits": max(0, len(t.versions) - 1), "at": t.created_at}
                for t in toots[since:]
            ],
        }

    # -- entities ------------------------------------------------------------

    def _account(self) -> dict[str, Any]:
        url = f"https://{self.domain}/@{self.username}"
        return {
            "id": "109000000000000001",
            "username": self.username,
            "acct": self.username,
            "display_name": "沼津市防災情報",
            "locked": False,
            "bot": True,
            "created_at": "2024-04-01T00:00:00.000Z",
            "note": "<p>沼津市の防災情報をお知らせします。</p>",
            "url": url,
            "avatar": f"https://{self.domain}/avatars/original/missing.png",
            "avatar_static": f"https://{self.domain}/avatars/original/missing.png",
            "header": f"https://{self.domain}/headers/original/missing.png",
            "header_static": f"https://{self.domain}/headers/original/missing.png",
            "followers_count": 0,
            "following_count": 0,
            "statuses_count": len(self.posted),
            "last_status_at": None,
            "emojis": [],
            "fields": [],
        }

    def _status(self, toot: Toot) -> dict[str, Any]:
        reply = self.toots.get(toot.in_reply_to_id or "")
        return {
            "id": toot.id,
            "created_at": _iso(toot.created_at),
            "in_reply_to_id": toot.in_reply_to_id,
            "in_reply_to_account_id": self._account()["id"] if reply is not None else None,
            "sensitive": toot.sensitive,
            "spoiler_text": toot.spoiler_text,
            "visibility": toot.visibility,
            "language": toot.language,
            "uri": f"https://{self.domain}/users/{self.username}/statuses/{toot.id}",
            "url": f"https://{self.domain}/@{self.username}/{toot.id}",
            "replies_count": sum(1 for t in self.posted if t.in_reply_to_id == toot.id),
            "reblogs_count": 0,
            "favourites_count": 0,
            "edited_at": None if toot.edited_at is None else _iso(toot.edited_at),
            "favourited": False,
            "reblogged": False,
            "muted": False,
            "bookmarked": False,
            "pinned": False,
            "content": _html(toot.text),
            "filtered": [],
            "reblog": None,
            "application": {"name": "numazu-dispatcher", "website": None},
            "account": self._account(),
            "media_attachments": [],
            "mentions": [],
            "tags": [],
            "emojis": [],
            "card": None,
            "poll": None,
        }

    # -- protocol ------------------------------------------------------------

    @staticmethod
    def _json(body: Any, budget: Budget, status: int = 200) -> web.Response:
        headers = {
            "X-RateLimit-Limit": str(budget.limit),
            "X-RateLimit-Remaining": str(budget.remaining),
            "X-RateLimit-Reset": _iso(budget.reset_at, "microseconds"),
        }
        return web.json_response(body, status=status, headers=headers)

    def _error(self, request: web.Request, status: int, error: str, budget: Budget, reason: str) -> web.Response:
        return self.refused(request, self._json({"error": error}, budget, status), reason)

    def _authenticated(self, request: web.Request) -> str | None:
        token = bearer(request)
        if token is None or self.token_revoked or (self.token is not None and token != self.token):
            return None
        return token

    def _throttle(self, request: web.Request, token: str | None) -> Budget | web.Response:
        """Count the request in its Rack::Attack buckets; the 429 if one is spent."""
        if token is None:
            windows = [(self._windows["ip"], request.remote or "")]
        else:
            windows = [(self._windows["token"], token), (self._windows["account"], self.username)]
            if request.method == "DELETE":
                windows.append((self._windows["delete"], self.username))
        budget = tightest(take_all(((window, key, 1) for window, key in windows), self.clock()))
        if not budget.allowed:
            self.rate_limited += 1
            return self._error(request, 429, "Too many requests", budget, f"{budget.name} spent")
        return budget

    def _route(self, handler: _Handler, *, write: bool = False) -> Callable[[web.Request], Awaitable[web.Response]]:
        """``handler`` behind authentication and throttling, given the token and the budget."""

        async def route(request: web.Request) -> web.Response:
            begun = self._begin(request, write=write)
            return begun if isinstance(begun, web.Response) else await handler(request, *begun)

        return route

    def _begin(self, request: web.Request, *, write: bool) -> tuple[str | None, Budget] | web.Response:
        """Authenticate and throttle; for writes, also require a token and apply injected failures."""
        token = self._authenticated(request)
        budget = self._throttle(request, token)
        if isinstance(budget, web.Response):
            return budget
        if write and token is None:
            return self._error(request, 401, "The access token is invalid", budget, "no valid bearer token")
        if write:
            injected = self.failures.take()
            if injected is not None and injected.status == 429:
                self.rate_limited += 1
                spent = Budget(budget.name, budget.limit, 0, budget.reset_at, budget.period, False)
                return self._error(request, 429, "Too many requests", spent, "injected 429")
            if injected is not None:
                error = HTTPStatus(injected.status).phrase
                return self._error(request, injected.status, error, budget, "injected failure")
        return token, budget

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            body = await request.json()
            return body if isinstance(body, dict) else {}
        return dict(await request.post())

    def _validate(self, text: str, spoiler_text: str, visibility: str) -> str | None:
        if not text.strip():
            return "Validation failed: Text can't be blank"
        if countable_length(text, spoiler_text) > self.max_characters:
            return f"Validation failed: Text character limit of {self.max_characters} exceeded"
        if visibility not in VISIBILITIES:
            return "Validation failed: Visibility is not included in the list"
        return None

    def _next_id(self) -> str:
        # Mastodon ids are milliseconds shifted left 16 bits plus a sequence: time-ordered strings.
        self._last_id = max(self._last_id + 1, int(time.time() * 1000) << 16)
        return str(self._last_id)

    async def _create(self, request: web.Request, _token: str | None, budget: Budget) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        now = self.clock()
        self._by_key = {k: v for k, v in self._by_key.items() if now - v[1] < IDEMPOTENCY_TTL}
        if key is not None and key in self._by_key:
            earlier = self.toots[self._by_key[key][0]]
            if earlier.deleted:
                return self._error(request, 404, "Record not found", budget, "idempotent repeat of a deleted status")
            return self._json(self._status(earlier), budget)
        try:
            params = await self._params(request)
        except ValueError:
            return self._error(request, 400, "Error while parsing the request body", budget, "unparsable JSON")
        text, spoiler = str(params.get("status") or ""), str(params.get("spoiler_text") or "")
        visibility = str(params.get("visibility") or "public")
        invalid = self._validate(text, spoiler, visibility)
        if invalid is not None:
            return self._error(request, 422, invalid, budget, invalid)
        reply_to = str(params["in_reply_to_id"]) if params.get("in_reply_to_id") else None
        if reply_to is not None and (reply_to not in self.toots or self.toots[reply_to].deleted):
            error = "The post you are trying to reply to does not appear to exist."
            return self._error(request, 404, error, budget, "in_reply_to_id not found")
        toot = Toot(
            id=self._next_id(),
            text=text,
            spoiler_text=spoiler,
            visibility=visibility,
            language=str(params["language"]) if params.get("language") else None,
            sensitive=str(params.get("sensitive", "false")).lower() in ("true", "1"),
            in_reply_to_id=reply_to,
            idempotency_key=key,
            created_at=now,
        )
        self.toots[toot.id] = toot
        if key is not None:
            self._by_key[key] = (toot.id, now)
        return self._json(self._status(toot), budget)

    def _find(self, request: web.Request) -> Toot | None:
        toot = self.toots.get(request.match_info["id"])
        return None if toot is None or toot.deleted else toot

    async def _show(self, request: web.Request, token: str | None, budget: Budget) -> web.Response:
        toot = self._find(request)
        # Private and direct statuses are invisible (404, not 403) to strangers.
        if toot is None or (toot.visibility in ("private", "direct") and token is None):
            return self._error(request, 404, "Record not found", budget, "no such status")
        return self._json(self._status(toot), budget)

    async def _edit(self, request: web.Request, _token: str | None, budget: Budget) -> web.Response:
        toot = self._find(request)
        if toot is None:
            return self._error(request, 404, "Record not found", budget, "no such status")
        try:
            params = await self._params(request)
        except ValueError:
            return self._error(request, 400, "Error while parsing the request body", budget, "unparsable JSON")
        text = str(params["status"]) if "status" in params else toot.text
        spoiler = str(params["spoiler_text"]) if "spoiler_text" in params else toot.spoiler_text
        invalid = self._validate(text, spoiler, toot.visibility)
        if invalid is not None:
            return self._error(request, 422, invalid, budget, invalid)
        now = self.clock()
        if not toot.versions:
            toot.versions.append((toot.text, toot.spoiler_text, toot.sensitive, toot.created_at))
        if "sensitive" in params:
            toot.sensitive = str(params["sensitive"]).lower() in ("true", "1")
        if params.get("language"):
            toot.language = str(params["language"])
        toot.text, toot.spoiler_text, toot.edited_at = text, spoiler, now
        toot.versions.append((text, spoiler, toot.sensitive, now))
        return self._json(self._status(toot), budget)

    async def _history(self, request: web.Request, _token: str | None, budget: Budget) -> web.Response:
        toot = self._find(request)
        if toot is None:
            return self._error(request, 404, "Record not found", budget, "no such status")
        versions = toot.versions or [(toot.text, toot.spoiler_text, toot.sensitive, toot.created_at)]
        account = self._account()
        edits = [
            {
                "content": _html(text),
                "spoiler_text": spoiler,
                "sensitive": sensitive,
                "created_at": _iso(at),
                "account": account,
                "media_attachments": [],
                "emojis": [],
            }
            for text, spoiler, sensitive, at in versions
        ]
        return self._json(edits, budget)

    async def _delete(self, request: web.Request, _token: str | None, budget: Budget) -> web.Response:
        toot = self._find(request)
        if toot is None:
            return self._error(request, 404, "Record not found", budget, "no such status")
        toot.deleted = True
        # The source text comes back for delete-and-redraft.
        return self._json({**self._status(toot), "text": toot.text}, budget)

    async def _instance(self, request: web.Request, _token: str | None, budget: Budget) -> web.Response:
        instance = {
            "domain": self.domain,
            "title": "Mastodon (stand-in)",
            "version": "4.3.0",
            "source_url": "https://github.com/mastodon/mastodon",
            "description": "A local stand-in for a Mastodon server.",
            "usage": {"users": {"active_month": 1}},
            "languages": ["ja", "en"],
            "configuration": {
                "urls": {"streaming": f"wss://{self.domain}"},
                "accounts": {"max_featured_tags": 10, "max_pinned_statuses": 5},
                "statuses": {
                    "max_characters": self.max_characters,
                    "max_media_attachments": 4,
                    "characters_reserved_per_url": URL_CHARACTERS,
                },
                "polls": {"max_options": 4, "max_characters_per_option": 50},
                "translation": {"enabled": False},
            },
            "registrations": {"enabled": False, "approval_required": False, "message": None},
            "contact": {"email": f"admin@{self.domain}", "account": None},
            "rules": [],
        }
        return self._json(instance, budget)

    async def _verify_credentials(self, request: web.Request, token: str | None, budget: Budget) -> web.Response:
        if token is None:
            return self._error(request, 401, "The access token is invalid", budget, "no valid bearer token")
        return self._json(self._account(), budget)


# -- standalone ----------------------------------------------------------------


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", default=None, help="accept only this access token (default: any)")
    parser.add_argument("--max-characters", type=int, default=500)
    parser.add_argument("--token-limit", type=int, default=300, help="requests per 5 minutes per token")


def _build(args: argparse.Namespace) -> MastodonStandIn:
    return MastodonStandIn(args.token, max_characters=args.max_characters, token_limit=args.token_limit)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dispatcher.standins.mastodon``."""
    description = "Serve the Mastodon API stand-in until SIGTERM; print its base_url first."
    return cli_main("python -m dispatcher.standins.mastodon", description, _arguments, _build, argv)


if __name__ == "__main__":
    sys.exit(main())
