"""The operators' live dashboard, an alert's timeline and the retry of failed deliveries, against the real daemon.

The daemon runs in-process (web on a free port, a real PostgreSQL, the Telegram Bot
API and SMTP stand-ins: :func:`tests.integration.test_console.start_stack`); staff
are aiohttp clients logged in through the real ``/login``. The live stream is read as
a browser's EventSource would (``text/event-stream``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dispatcher.model import Area
from dispatcher.store import audit
from dispatcher.store import db as store_db
from dispatcher.web import live
from dispatcher.web.live import LIVE
from tests.integration.test_console import Stack, start_stack
from tests.integration.test_path import wait_settled
from tests.samples import add_subscribers, make_alert
from tests.staffing import page_token, staff_session


@pytest.fixture
async def stack(database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    s = await start_stack(database, tmp_path)
    try:
        yield s
    finally:
        await s.service.stop()
        await s.telegram.stop()
        await s.smtp.stop()


async def ingest(stack: Stack, identifier: str, **fields: Any) -> int:
    assert stack.service.pipeline is not None
    result = await stack.service.pipeline.ingest(make_alert(identifier, **fields))
    rows = await stack.fetch("SELECT id FROM alerts WHERE identifier = $1", identifier)
    assert rows, result
    return int(rows[0]["id"])


async def events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a Server-Sent Events stream."""
    name, data = "message", []
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


async def test_the_live_stream_follows_an_alert_to_the_totals_the_database_holds(stack: Stack) -> None:
    await add_subscribers(stack.dsn, "telegram", [str(700000 + i) for i in range(60)])
    async with staff_session(stack.base, stack.dsn, "watcher") as http, http.get(f"{stack.base}/api/live") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        stream = events(resp)
        kind, first = await anext(stream)
        assert kind == "snapshot" and "channels" in first and "telegram" in first["channels"]
        alert_id = await ingest(stack, "live-1", sent=datetime.now(UTC) - timedelta(seconds=5))
        seen: list[int] = []
        deadline = time.monotonic() + 30
        final: dict[str, int] = {}
        while time.monotonic() < deadline:
            kind, data = await asyncio.wait_for(anext(stream), 10)
            assert kind == "progress"
            mine = [a for a in data["alerts"] if a["id"] == alert_id]
            if not mine:
                continue
            tg = mine[0]["channels"]["telegram"]
            seen.append(tg["delivered"])
            if tg["total"] and tg["delivered"] + tg["failed"] == tg["total"]:
                final = tg
                break
        rows = await stack.fetch(
            "SELECT state::text AS state, count(*) AS n FROM deliveries WHERE alert_id = $1 AND channel = 'telegram'"
            " GROUP BY 1",
            alert_id,
        )
        held = {r["state"]: int(r["n"]) for r in rows}
        assert final, f"the stream never showed the alert finished: {seen}"
        assert final["delivered"] == held.get("delivered", 0) >= 60
        assert final["total"] == sum(held.values())
        assert final["eta"] == "done"
        assert len(set(seen)) >= 2, f"the numbers should change as it goes: {seen}"
    assert stack.service.runner is not None
    hub = stack.service.runner.app[LIVE]
    assert hub.reads < hub.notifications, "one read serves a batch of notifications"


async def test_the_dashboard_draws_bars_and_health_without_script_and_refuses_the_anonymous(stack: Stack) -> None:
    alert_id = await ingest(stack, "dash-1")
    await wait_settled(stack.dsn, 1)
    async with aiohttp.ClientSession() as anon:
        async with anon.get(f"{stack.base}/", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"].startswith("/login")
        async with anon.get(f"{stack.base}/api/live") as resp:
            assert resp.status == 401
        async with anon.get(f"{stack.base}/api/alerts/{alert_id}/timeline") as resp:
            assert resp.status == 401
    async with staff_session(stack.base, stack.dsn, "viewer1") as http:
        await asyncio.sleep(0.5)  # the hub's next batch
        async with http.get(f"{stack.base}/") as resp:
            html = await resp.text()
        assert f'data-alert="{alert_id}"' in html
        assert 'class="s-delivered"' in html and 'src="/static/dashboard.js"' in html
        assert 'id="health"' in html and 'data-channel="telegram"' in html
        assert "/channels/telegram/pause" not in html, "a viewer sees no pause button"
        async with http.get(f"{stack.base}/static/dashboard.js") as resp:
            assert resp.status == 200 and "EventSource" in await resp.text()
        async with http.get(f"{stack.base}/api/dashboard") as resp:
            view = await resp.json()
        h = view["channels"]["telegram"]
        assert h["limit"] == 30.0 and h["quota_remaining"] is None and h["paused"] is False
    async with staff_session(stack.base, stack.dsn, "approver1", "approver") as http:
        async with http.get(f"{stack.base}/") as resp:
            html = await resp.text()
        assert "/channels/telegram/pause" in html and "/channels/telegram/resume" in html


async def test_the_timeline_json_holds_issue_receipt_storage_and_first_and_last_delivery(stack: Stack) -> None:
    await add_subscribers(stack.dsn, "telegram", ["810001", "810002", "810003"])
    issued = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    alert_id = await ingest(stack, "tl-1", sent=issued)
    await wait_settled(stack.dsn, 3)
    async with staff_session(stack.base, stack.dsn, "viewer2") as http:
        async with http.get(f"{stack.base}/api/alerts/{alert_id}/timeline") as resp:
            assert resp.status == 200
            t = await resp.json()
        async with http.get(f"{stack.base}/alerts/{alert_id}/timeline") as resp:
            html = await resp.text()
        async with http.get(f"{stack.base}/api/alerts/999999/timeline") as resp:
            assert resp.status == 404
        async with http.get(f"{stack.base}/api/alerts/x1/timeline") as resp:
            assert resp.status == 404
    assert datetime.fromisoformat(t["issued"]) == issued
    stored = datetime.fromisoformat(t["stored"])
    [row] = await stack.fetch("SELECT received_at FROM alerts WHERE id = $1", alert_id)
    assert stored == row["received_at"]
    assert 29 <= t["receipt_after_issue_s"] < 40 and t["stored_after_receipt_s"] >= 0
    [tg] = [c for c in t["channels"] if c["channel"] == "telegram"]
    [span] = await stack.fetch(
        "SELECT count(*) AS n, min(updated_at) AS first, max(updated_at) AS last FROM deliveries"
        " WHERE alert_id = $1 AND channel = 'telegram' AND state = 'delivered'",
        alert_id,
    )
    assert tg["delivered"] == span["n"] >= 3
    assert datetime.fromisoformat(tg["first_delivery"]) == span["first"]
    assert datetime.fromisoformat(tg["last_delivery"]) == span["last"]
    assert t["receipt_after_issue_s"] <= tg["first_after_issue_s"] <= tg["last_after_issue_s"]
    assert tg["last_after_receipt_s"] == pytest.approx(tg["last_after_issue_s"] - t["receipt_after_issue_s"], abs=0.01)
    assert '<svg class="timeline timeline-wide"' in html and '<svg class="timeline timeline-narrow"' in html
    assert "<script" not in html.split("<footer>")[0]


async def test_approvers_retry_failed_deliveries_with_csrf_and_audit_viewers_cannot(stack: Stack) -> None:
    await add_subscribers(stack.dsn, "telegram", ["820001", "820002"])
    stack.telegram.block("820001")
    alert_id = await ingest(stack, "retry-1")
    rows = await wait_settled(stack.dsn, 2)
    [failed] = [r for r in rows if r["address"] == "820001"]
    assert failed["state"] == "failed"
    url = f"{stack.base}/deliveries/{failed['id']}/retry"
    async with aiohttp.ClientSession() as anon, anon.post(url, allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"].startswith("/login")
    async with staff_session(stack.base, stack.dsn, "viewer3") as http:
        token = await page_token(http, f"{stack.base}/deliveries/{failed['id']}")
        async with http.post(url, data={"csrf_token": token}, allow_redirects=False) as resp:
            assert resp.status == 403
        async with http.get(f"{stack.base}/deliveries/{failed['id']}") as resp:
            assert 'id="retry"' not in await resp.text()
    async with staff_session(stack.base, stack.dsn, "approver2", "approver") as http:
        async with http.post(url, data={}, allow_redirects=False) as resp:
            assert resp.status == 403, "no CSRF token: refused"
        async with http.get(f"{stack.base}/deliveries/{failed['id']}") as resp:
            assert 'id="retry"' in await resp.text()
        stack.telegram.blocked.discard("820001")
        token = await page_token(http, f"{stack.base}/deliveries/{failed['id']}")
        async with http.post(url, data={"csrf_token": token}, allow_redirects=False) as resp:
            assert resp.status == 303, await resp.text()
            assert resp.headers["Location"].startswith(f"/deliveries/{failed['id']}?note=")
        await wait_settled(stack.dsn, 2)
        [again] = await stack.fetch("SELECT state::text AS state, attempts FROM deliveries WHERE id = $1", failed["id"])
        assert again["state"] == "delivered" and again["attempts"] == 2
        # Nothing failed any more: a retry of the whole alert requeues nothing, and says so.
        token = await page_token(http, f"{stack.base}/alerts/{alert_id}/deliveries")
        async with http.post(
            f"{stack.base}/alerts/{alert_id}/deliveries/retry",
            data={"csrf_token": token, "channel": "telegram"},
            headers={"Accept": "application/json"},
        ) as resp:
            assert resp.status == 200 and (await resp.json()) == {"requeued": []}
        async with http.get(
            f"{stack.base}/alerts/{alert_id}/deliveries", params={"recipient": "820001", "channel": "telegram"}
        ) as resp:
            html = await resp.text()
        assert html.count('<a href="/deliveries/') == 1 and "delivered" in html
    conn = await store_db.connect(stack.dsn)
    try:
        entries = [e for e in await audit.entries(conn) if e["action"] == "delivery.retry"]
    finally:
        await conn.close()
    assert [e["actor"] for e in entries] == ["approver2", "approver2"]
    assert entries[0]["target"] == f"delivery:{failed['id']}"


async def test_the_stream_brings_new_alerts_and_their_own_state_changes(stack: Stack) -> None:
    async with staff_session(stack.base, stack.dsn, "watcher2") as http, http.get(f"{stack.base}/api/live") as resp:
        stream = events(resp)
        kind, _first = await anext(stream)
        assert kind == "snapshot"
        # An alert nobody receives still appears (its own notification, not its deliveries').
        alert_id = await ingest(stack, "nobody-1", areas=(Area("どこか", ("9999999",)),))

        async def until(check: Any) -> dict[str, Any]:
            while True:
                _kind, data = await asyncio.wait_for(anext(stream), 10)
                for a in data["alerts"]:
                    if a["id"] == alert_id and check(a):
                        return dict(a)

        row = await until(lambda a: True)
        assert row["channels"] == {} and row["state"] == "active"
        await stack.fetch("UPDATE alerts SET state = 'cancelled' WHERE id = $1", alert_id)
        row = await until(lambda a: a["state"] == "cancelled")
        assert row["event"] == "大雨警報"


async def test_a_stream_ends_when_its_session_does(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "SESSION_CHECK", 0.2)
    async with staff_session(stack.base, stack.dsn, "leaver") as http:
        token = await page_token(http, f"{stack.base}/")
        async with http.get(f"{stack.base}/api/live") as resp:
            stream = events(resp)
            assert (await anext(stream))[0] == "snapshot"
            async with http.post(f"{stack.base}/logout", data={"csrf_token": token}, allow_redirects=False) as out:
                assert out.status == 303
            kinds = []
            async for kind, _data in stream:
                kinds.append(kind)
                if len(kinds) > 20:
                    break
            assert kinds[-1] == "logout", kinds


async def test_an_approver_retries_every_failed_delivery_of_an_alert_on_one_channel(stack: Stack) -> None:
    await add_subscribers(stack.dsn, "telegram", ["830001", "830002", "830003"])
    for chat in ("830001", "830002"):
        stack.telegram.block(chat)
    alert_id = await ingest(stack, "retry-all-1")
    rows = await wait_settled(stack.dsn, 3)
    failed = sorted(r["id"] for r in rows if r["state"] == "failed")
    assert len(failed) == 2
    stack.telegram.blocked.clear()
    async with staff_session(stack.base, stack.dsn, "approver3", "approver") as http:
        page = f"{stack.base}/alerts/{alert_id}/deliveries"
        async with http.get(page, params={"state": "failed"}) as resp:
            html = await resp.text()
        assert 'id="retry-all"' in html and "telegram (2 failed)" in html
        token = await page_token(http, page)
        async with http.post(f"{page}/retry", data={"csrf_token": token, "channel": "email"},
                             headers={"Accept": "application/json"}) as resp:  # fmt: skip
            assert (await resp.json()) == {"requeued": []}, "another channel's: nothing"
        async with http.post(f"{page}/retry", data={"csrf_token": token, "channel": "nope"}) as resp:
            assert resp.status == 400
        async with http.post(f"{page}/retry", data={"csrf_token": token}, allow_redirects=False) as resp:
            assert resp.status == 303 and "2%20failed%20deliveries%20requeued" in resp.headers["Location"]
    rows = await wait_settled(stack.dsn, 3)
    assert all(r["state"] == "delivered" for r in rows if r["id"] in failed)
