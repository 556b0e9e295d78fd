"""The trip of one municipal broadcast: signed POST → alert → every provider's acceptance.

Starts the real daemon (:class:`dispatcher.app.Service`, web server on a free port) on a
scratch PostgreSQL database (``$DATABASE_URL`` if set, else an embedded pgserver in a
temporary directory) against the Telegram Bot API and SMTP stand-ins, subscribes four
residents (three follow 戸田 ``numazu-heda``, one 原 ``numazu-hara``), POSTs one signed
CAP 1.2 broadcast for the loudspeaker group ``heda`` to ``/hooks/broadcast`` as the
console would, and prints: the signed request, the HTTP answer, the alert it became, and
each delivery with its timings from the request (alert stored, queued, claimed, accepted
by the provider stand-in, recorded delivered), as a table.

Run: ``.venv/bin/python bench/broadcast_trip.py``
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from channels.email import EmailConfig
from channels.telegram import TelegramConfig
from dispatcher.app import Service
from dispatcher.demo import with_database
from dispatcher.settings import ChannelSettings, load
from dispatcher.standins.smtp import SmtpStandIn
from dispatcher.standins.telegram_api import TelegramStandIn
from dispatcher.store import db
from dispatcher.store.subscribers import subscribe
from sources.broadcast.examples import cap_body, signed_headers

SECRET = "bench-broadcast-secret-0123456789ab"
JST = timezone(timedelta(hours=9))
TEXT = "こちらは、防災ぬまづです。戸田地区に土砂災害の避難指示を発令しました。直ちに安全な場所へ避難してください。"


async def _server() -> tuple[str, str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, "$DATABASE_URL"
    state = Path(tempfile.mkdtemp(prefix="bench-broadcast-pg-"))
    return await db.resolve_dsn(None, state, "postgres"), f"embedded pgserver in {state}"


def _ms(t: float | None, t0: float) -> str:
    return "—" if t is None else f"{(t - t0) * 1000:8.1f}"


async def _watch(telegram: TelegramStandIn, smtp: SmtpStandIn, seen: dict[str, float], stop: asyncio.Event) -> None:
    """Wall-clock time each provider stand-in first held each message (2 ms resolution)."""
    mono_to_wall = time.time() - time.monotonic()
    while not stop.is_set():
        for m in telegram.messages:
            seen.setdefault(f"telegram:{m.chat_id}", m.at + mono_to_wall)
        for mail in smtp.messages:
            for rcpt in mail.rcpt_tos:
                seen.setdefault(f"email:{rcpt}", time.time())
        await asyncio.sleep(0.002)


async def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    server, origin = await _server()
    name = "bench_broadcast_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(server)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(server, name)
    telegram, smtp = TelegramStandIn(), SmtpStandIn()
    await telegram.start()
    await smtp.start()
    service: Service | None = None
    try:
        base = load(None, env={})
        settings = dataclasses.replace(
            base,
            service=dataclasses.replace(base.service, state_dir=Path(tempfile.mkdtemp(prefix="bench-broadcast-"))),
            web=dataclasses.replace(base.web, port=0),
            delivery=dataclasses.replace(base.delivery, poll_interval=0.2),
            sources={
                "jma": dataclasses.replace(base.sources["jma"], enabled=False),
                "broadcast": dataclasses.replace(base.sources["broadcast"], enabled=True, secret=SECRET),
            },
            channels={
                "telegram": ChannelSettings(
                    "telegram", enabled=True, options=TelegramConfig(token="42:BENCH", base_url=telegram.base_url)
                ),
                "email": ChannelSettings("email", enabled=True, options=EmailConfig(host=smtp.host, port=smtp.port)),
            },
        )
        service = Service(settings, dsn=dsn)
        await service.start()
        conn = await asyncpg.connect(dsn)
        await subscribe(conn, channel="telegram", address="300001", areas=["numazu-heda"], language="ja")
        await subscribe(conn, channel="telegram", address="300002", areas=["numazu-heda"], language="en")
        await subscribe(conn, channel="email", address="heda@example.jp", areas=["numazu-heda"], language="ja-easy")
        await subscribe(conn, channel="telegram", address="300009", areas=["numazu-hara"], language="ja")

        aired = datetime.now(JST).replace(microsecond=0)
        body = cap_body(
            f"NMZ-{aired:%Y%m%d%H%M%S}", TEXT, ["heda"], sent=aired, category="evacuation", area_desc="戸田地区"
        )
        headers = signed_headers(SECRET, body, "application/cap+xml")
        url = f"{service.web_url}/hooks/broadcast"
        print(f"database {name} on {origin}\n")
        print("== signed request ==")
        print(f"POST {url}")
        for k, v in headers.items():
            print(f"{k}: {v}")
        print()
        print(body.decode())

        seen: dict[str, float] = {}
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch(telegram, smtp, seen, stop))
        t0 = time.time()
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
            answer = await r.json()
            t_answer = time.time()
            print(f"== HTTP answer ({(t_answer - t0) * 1000:.1f} ms) ==\n{r.status} {json.dumps(answer)}\n")
        alert_id = answer["alert_id"]

        deadline = time.monotonic() + 20
        while True:
            states = [r["state"] for r in await conn.fetch("SELECT state::text FROM deliveries")]
            if states and all(s in ("delivered", "failed") for s in states):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"deliveries did not settle: {states}")
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        stop.set()
        await watcher

        a = await conn.fetchrow("SELECT * FROM alerts WHERE id = $1", alert_id)
        stored = a["received_at"].timestamp()
        print("== alert ==")
        print(f"id {a['id']}  identifier {a['identifier']}  sender {a['sender']}")
        print(
            f"event {a['event']}  priority {a['priority']} (CRITICAL=0)  severity {a['severity']}  state {a['state']}"
        )
        print(f"headline {a['headline']}")
        print(f"areas {[x['description'] for x in json.loads(a['areas'])]}  target codes {list(a['target_codes'])}")
        print(f"stored at +{(stored - t0) * 1000:.1f} ms (transaction start)\n")

        rows = await conn.fetch(
            """
            SELECT d.id, d.channel, d.address, d.language, d.state::text AS state,
                   min(e.at) FILTER (WHERE e.state = 'queued') AS queued,
                   min(e.at) FILTER (WHERE e.state = 'sending') AS sending,
                   min(e.at) FILTER (WHERE e.state = 'delivered') AS delivered
            FROM deliveries d JOIN delivery_events e ON e.delivery_id = d.id
            WHERE d.alert_id = $1 GROUP BY d.id ORDER BY d.id
            """,
            alert_id,
        )
        print("== deliveries (ms after the request was sent) ==")
        head = f"{'#':>3} {'channel':9} {'to':17} {'lang':7} {'state':10} {'queued':>8} {'claimed':>8}"
        print(head + f" {'provider':>8} {'recorded':>8}")
        for d in rows:
            ts: dict[str, Any] = {k: (d[k].timestamp() if d[k] else None) for k in ("queued", "sending", "delivered")}
            provider = seen.get(f"{d['channel']}:{d['address']}")
            print(
                f"{d['id']:>3} {d['channel']:9} {d['address']:17} {d['language']:7} {d['state']:10} "
                f"{_ms(ts['queued'], t0)} {_ms(ts['sending'], t0)} {_ms(provider, t0)} {_ms(ts['delivered'], t0)}"
            )
        not_reached = await conn.fetchval("SELECT count(*) FROM deliveries WHERE address = '300009'")
        print(f"\nsubscriber of 原 (numazu-hara) deliveries: {not_reached}  (not in the group: none expected)")
        print(f"first message of 300001:\n{next(m.text for m in telegram.messages if m.chat_id == '300001')}")
        total = (max(seen.values()) - t0) * 1000
        print(f"\nrequest → last provider acceptance: {total:.1f} ms  (run at {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ})")
        await conn.close()
    finally:
        if service is not None:
            await service.stop()
        await telegram.stop()
        await smtp.stop()
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
