"""The public pages as HTML, from the Jinja2 templates in ``dispatcher/web/templates/site_*.html``.

Rendered outside any request, so that the same bytes are served by the daemon and
written to the static copy. Autoescaped, undefined names are errors, as the
operators' pages (:mod:`dispatcher.web.templating`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup

from dispatcher.publication import text as T
from dispatcher.publication.view import url
from dispatcher.status import JST

FIELDS = (
    ("public_id", "情報のID（ページは /alerts/{public_id}）", "the alert's id (page: /alerts/{public_id})"),
    ("sent", "発表時刻（ISO 8601）", "when it was issued (ISO 8601)"),
    ("received", "このサービスが受信した時刻", "when this service received it"),
    ("expires", "有効期限（空欄：示されていない）", "until when (empty: not given)"),
    ("msg_type", "alert（発表）/ update（更新）/ cancel（取消）", "alert / update / cancel"),
    ("state", "active（有効）/ superseded（更新済み）/ cancelled（取消済み）", "active / superseded / cancelled"),
    ("event", "情報の種類（大雨警報、津波警報など）", "the type (大雨警報, 津波警報, …)"),
    ("severity", "CAP の重大度", "CAP severity"),
    ("area", "対象地域の名前（CSV：1行に1地域）", "an area's name (CSV: one area a row)"),
    ("area_codes", "気象庁の地域コード、地区コード", "JMA area codes, district codes"),
    ("level", "警戒レベル（1～5、ないときは空欄）", "the warning level (1–5, empty when none)"),
    ("credit", "気象庁の情報は「出典：気象庁」", "JMA's content: 出典：気象庁"),
)  # fmt: skip


def _escape(value: Any) -> Any:
    if value is None:
        return ""
    if hasattr(value, "__html__"):
        return value
    return Markup(html.escape(str(value)))  # noqa: S704 (escaped on this line)


def _jst(value: datetime, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A time in JST (the pages say so where it matters)."""
    return value.astimezone(JST).strftime(fmt)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dispatcher.web", "templates"),
        autoescape=True,
        finalize=_escape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["jst"] = _jst
    return env


def _language_links(lang: str, page: str, key: str) -> list[tuple[str, str, str]]:
    return [(code, T.NAMES[code], url(code, page, key)) for code in T.LANGUAGES]


def render(template: str, lang: str, title: str, page: str, key: str = "", **values: Any) -> str:
    """``template`` in ``lang``; ``page``/``key`` name the page, for the language switch."""
    context: Mapping[str, Any] = {
        "lang": lang,
        "html_lang": T.HTML_LANG.get(lang, "ja"),
        "w": T.words(lang),
        "title": title,
        "languages": _language_links(lang, page, key),
        "home": url(lang, "home"),
        "archive": url(lang, "archive"),
        "open_data": url(lang, "open-data"),
        "subscribe": url(lang, "subscribe"),
        "noindex": False,
        **values,
    }
    return environment().get_template(template).render(context)


def svg(markup: str) -> Markup:
    """Markup we built ourselves (the district map), every value in it escaped."""
    return Markup(markup)  # noqa: S704 (built from escaped parts by svgmap)
