"""The pages' templates without a database: autoescaping, the layout, the stylesheet's cache headers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from dispatcher.web.app import create_app
from dispatcher.web.context import WebContext
from dispatcher.web.templating import page


def app() -> web.Application:
    return create_app(WebContext(pool=None, site_name="沼津市 <防災>", body_timeout=5.0))  # type: ignore[arg-type]


def render(template: str, values: dict[str, Any]) -> str:
    request = make_mocked_request("GET", "/", app=app())
    response = page(request, template, "t'itle", values)
    assert response.content_type == "text/html" and response.text is not None
    return response.text


def test_every_value_is_escaped_as_html_escape_writes_it() -> None:
    hostile = "<script>alert('x')</script> & \"q\""
    alert = {
        "event": hostile,
        "status": "exercise",
        "headline": hostile,
        "sender": "気象庁",
        "sent": datetime(2026, 11, 29, 11, 15, tzinfo=UTC),
        "expires": None,
        "description": hostile,
        "instruction": "",
    }
    text = render("alert.html", {"alert": alert, "note": None, "areas": "沼津市"})
    assert "<script>" not in text and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;" in text
    assert "<title>t&#x27;itle — 沼津市 &lt;防災&gt;</title>" in text
    assert "発表 2026-11-29 20:15 JST" in text and "None" not in text
    # Residents' header names the site without leading to the operators' dashboard; one footer.
    assert '<a class="home" href="/">' not in text and text.count("<footer>") == 1


def test_operator_pages_lead_home_and_to_their_json() -> None:
    text = render(
        "dashboard.html",
        {"alerts": [], "pauses": [], "degraded": False, "channels": "none enabled", "documents": "none yet",
         "health": {}, "version": 0, "segments": ()},
    )  # fmt: skip
    assert '<a class="home" href="/">沼津市 &lt;防災&gt;</a>' in text
    assert "No alerts yet." in text and '<a href="/api/dashboard">JSON</a>' in text


@pytest.mark.parametrize("path", ["/style.css", "/style.css?v=1"])
async def test_the_stylesheet_is_a_file_with_validators(path: str) -> None:
    async with TestClient(TestServer(app())) as client:
        first = await client.get(path)
        assert first.status == 200 and first.content_type == "text/css" and "font-family" in await first.text()
        assert first.headers["Cache-Control"] == "public, max-age=3600" and "Last-Modified" in first.headers
        again = await client.get(path, headers={"If-None-Match": first.headers["ETag"]})
        assert again.status == 304
