"""The operators' reading commands: ``dispatcher status [--follow]``, ``deliveries`` and ``reconcile``.

Each prints text for people, or JSON with ``--json`` (``--follow --json``: one JSON
object per line, whenever something changed). They read the database the CLI finds
(:func:`dispatcher.cli._dsn`: ``DATABASE_URL``, ``[database]``, a running demo's, the
embedded one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import Any

from dispatcher.settings import Settings
from dispatcher.store import reports

# Seconds between two reads of ``status --follow``.
FOLLOW_EVERY = 1.0
DONE = ("delivered", "failed", "superseded", "expired")


def add_parsers(sub: Any) -> None:
    """Register ``status``, ``deliveries`` and ``reconcile`` on the CLI's subparsers."""
    s = sub.add_parser("status", help="recent alerts with per-channel delivery counts (--follow: live progress)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--follow", "-f", action="store_true", help="progress bars per alert and channel, until Ctrl-C")
    s.add_argument("--until-done", action="store_true", help="with --follow: stop when nothing is left to send")
    d = sub.add_parser("deliveries", help="an alert's deliveries (ALERT_ID: its number or its public id)")
    d.add_argument("alert", metavar="ALERT_ID")
    d.add_argument("--state", choices=sorted(reports.FILTERS), help="only this state (pending: queued or sending)")
    d.add_argument("--channel", help="only this channel")
    d.add_argument("--json", action="store_true")
    r = sub.add_parser("reconcile", help="compare what providers confirm with what the database calls delivered")
    r.add_argument("--since", help="deliveries recorded at or after this time (ISO 8601; without offset: JST)")
    r.add_argument("--json", action="store_true")


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2, default=lambda v: v.isoformat())


async def status(settings: Settings, args: argparse.Namespace) -> int:
    from dispatcher import status as text
    from dispatcher.cli import _connect
    from dispatcher.store.quotas import channel_quotas

    conn = await _connect(settings)
    try:
        if args.follow:
            return await _follow(conn, args)
        alerts = await reports.recent_alerts(conn, args.limit)
        documents = await reports.documents_summary(conn)
        pauses = await reports.channel_pauses(conn)
        quotas = await channel_quotas(conn)
        if args.json:
            report = {
                "status": reports.health(pauses),
                "paused": pauses,
                "alerts": alerts,
                "totals": await reports.totals(conn),
                "documents": documents,
                "quotas": quotas,
            }
            print(_dump(report))
        else:
            print(text.format_table(alerts, documents))
            print(text.format_pauses(pauses))
            if quotas:
                print(text.format_quotas(quotas))
    finally:
        await conn.close()
    return 0


def _pending(alerts: list[reports.AlertSummary]) -> bool:
    return any(c["queued"] + c["sending"] for a in alerts for c in a["deliveries"].values())


async def _follow(conn: Any, args: argparse.Namespace) -> int:
    """Progress bars per alert and channel, redrawn every second (rich); JSON lines with ``--json``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from dispatcher import status as text

    limit = min(args.limit, 10)
    if args.json:
        last = ""
        while True:
            alerts = await reports.recent_alerts(conn, limit)
            pauses = await reports.channel_pauses(conn)
            line = json.dumps({"alerts": alerts, "paused": pauses}, ensure_ascii=False)
            if line != last:
                print(line, flush=True)
                last = line
            if args.until_done and not _pending(alerts):
                return 0
            await asyncio.sleep(FOLLOW_EVERY)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        console=Console(),
        auto_refresh=False,
    )
    tasks: dict[tuple[int, str], Any] = {}
    said: list[str] = []
    with progress:
        while True:
            alerts = await reports.recent_alerts(conn, limit)
            lines = [text.describe_pause(p) for p in await reports.channel_pauses(conn)]
            if lines != said:
                for line in lines or ["channels: none paused"]:
                    progress.console.print(line)
                said = lines
            for a in reversed(alerts):
                for channel, c in sorted(a["deliveries"].items()):
                    total = sum(c.values())
                    done = sum(c[s] for s in DONE)
                    detail = f"{c['delivered']} delivered  {c['queued'] + c['sending']} pending  {c['failed']} failed"
                    key = (a["id"], channel)
                    if key not in tasks:
                        label = f"#{a['id']:<5} {text.fit(a['event'], 20)} {text.fit(channel, 9)}"
                        tasks[key] = progress.add_task(label, total=total, completed=done, detail=detail)
                    else:
                        progress.update(tasks[key], total=total, completed=done, detail=detail)
            progress.refresh()
            if args.until_done and not _pending(alerts):
                return 0
            await asyncio.sleep(FOLLOW_EVERY)


async def find_alert(conn: Any, ref: str) -> Any:
    """The alert named by its number or its public id (or an identifier its old links used)."""
    from dispatcher.store import alerts as alert_store

    if ref.isdigit():
        return await alert_store.alert_by_id(conn, int(ref))
    return await alert_store.public_alert(conn, ref)


async def deliveries(settings: Settings, args: argparse.Namespace) -> int:
    from dispatcher import status as text
    from dispatcher.cli import _connect
    from dispatcher.privacy import mask

    conn = await _connect(settings)
    try:
        alert = await find_alert(conn, args.alert)
        if alert is None:
            print(f"dispatcher: no alert {args.alert!r} (give its number or its public id)", file=sys.stderr)
            return 1
        rows: list[reports.DeliveryRow] = []
        while True:
            page = await reports.alert_deliveries(
                conn,
                alert["id"],
                state=args.state,
                channel=args.channel,
                after=rows[-1]["id"] if rows else 0,
                limit=5000,
            )
            rows += page
            if len(page) < 5000:
                break
        counts = await reports.delivery_counts(conn, alert["id"])
    finally:
        await conn.close()
    if args.json:
        head = {k: alert[k] for k in ("id", "public_id", "identifier", "event", "state")}
        shown = [
            {
                **{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()},
                "address": mask(r["address"]),
            }
            for r in rows
        ]
        print(_dump({"alert": head, "counts": counts, "deliveries": shown}))
        return 0
    print(f"alert #{alert['id']} {alert['public_id']} {alert['event']} ({alert['state']})")
    for channel, c in sorted(counts.items()):
        print(f"  {channel}: " + ", ".join(f"{n} {s}" for s, n in c.items() if n))
    print(text.format_deliveries(rows))
    return 0


def _with_demo_read_back(settings: Settings) -> Settings:
    """Reading a running demo's database: read back from its stand-ins (they take any token)."""
    import dataclasses

    from channels.mastodon import MastodonConfig
    from dispatcher import demostate
    from dispatcher.settings import ChannelSettings

    demo = demostate.in_use(settings)
    if demo is None or "mastodon" not in demo.read_back:
        return settings
    demo_token = "demo"  # noqa: S105 - the demo's stand-in accepts any token
    mastodon = ChannelSettings(
        "mastodon", enabled=True, options=MastodonConfig(base_url=demo.read_back["mastodon"], token=demo_token)
    )
    return dataclasses.replace(settings, channels={**settings.channels, "mastodon": mastodon})


async def reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from dispatcher.cli import _connect
    from dispatcher.reconcile import format_report, parse_since, reconcile_with

    try:
        since = parse_since(args.since)
    except ValueError as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return 2
    settings = _with_demo_read_back(settings)
    conn = await _connect(settings)
    try:
        report = await reconcile_with(settings, conn, since=since)
    finally:
        await conn.close()
    print(_dump(report.as_json()) if args.json else format_report(report))
    return report.exit_code
