"""Command line: ``dispatcher <command>`` (also ``python -m dispatcher``).

Commands:
    run             run the daemon
    demo            run the daemon against local stand-ins (``--once``: scenario, summary, exit)
    migrate         apply database migrations
    check-config    validate a configuration file
    status          recent alerts with per-channel delivery counts, paused channels (``--json``;
                    ``--follow``: live progress bars) (dispatcher/reading_cli.py)
    deliveries      an alert's deliveries, by its number or public id (``--state``, ``--channel``, ``--json``)
    reconcile       what providers confirm against what the database calls delivered (``--since``, ``--json``)
    channel         ``pause NAME [--reason TEXT] [--for SECONDS]`` or ``resume NAME``: every daemon
                    follows within seconds; who (the OS user) and why are recorded
    parse           parse JMA telegrams, one JSON object per file (exit 1 if any failed)
    locate          districts and hazard zones at a point
    subscribe       add or update a subscription (areas by name or code, or a location)
    audience        districts an alert file covers and how many subscribers it reaches
    relocate        recompute subscribers' districts and zones after a layer change
    approve         release an alert held for approval
    ingest          store and fan out JMA telegrams from files, as if they came from the feed
    user            staff accounts of the console: ``add NAME --role ROLE``, ``passwd``, ``disable``,
                    ``enable``, ``list`` (dispatcher/accounts_cli.py)
    audit           the audit log of staff actions (``--csv`` or ``--json``, ``--since ISO``)

Every command takes ``--config FILE`` before or after its name; a running demo's data: :func:`_dsn`.
    x-cost          what posting an alert (a file or a stored alert's public id) on X costs, with and without the link
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from dispatcher import accounts_cli, logs, reading_cli
from dispatcher.config import ConfigError
from dispatcher.settings import Settings, load

log = logging.getLogger("dispatcher")
STARTED = time.monotonic()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dispatcher", description="Disaster information dissemination service")
    p.add_argument("--config", "-c", help="configuration file laid over the defaults (or $DISPATCHER_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="run the daemon")
    d = sub.add_parser("demo", help="run the daemon against local stand-ins of JMA, Telegram and SMTP")
    d.add_argument("--once", action="store_true", help="run the scenario, print a summary, exit 0 if all delivered")
    d.add_argument("--port", type=int, default=8080, help="dashboard port (default 8080; 0 picks a free one)")
    d.add_argument("--interval", type=float, default=4.0, help="seconds between replayed telegrams")
    sub.add_parser("migrate", help="apply database migrations")
    c = sub.add_parser("check-config", help="validate a configuration file")
    c.add_argument("file", nargs="?", help="file to check (default: --config, $DISPATCHER_CONFIG or the defaults)")
    reading_cli.add_parsers(sub)
    ch = sub.add_parser("channel", help="pause or resume a channel's deliveries (every daemon follows)")
    actions = ch.add_subparsers(dest="action", required=True, metavar="ACTION")
    cp = actions.add_parser("pause", help="stop sending on a channel (queued deliveries wait)")
    cp.add_argument("name", help="channel name (telegram, email, webhook…)")
    cp.add_argument("--reason", default="", help="why, for the other operators (shown in status and /healthz)")
    cp.add_argument("--for", dest="seconds", type=float, help="seconds until it resumes by itself (default: never)")
    cr = actions.add_parser("resume", help="send again at once: ends an operator's pause, the provider's, a backoff")
    cr.add_argument("name")
    cr.add_argument("--reason", default="", help="why, for the log of operators' actions")
    pa = sub.add_parser("parse", help="parse JMA telegrams; one JSON object per file; exit 1 if any failed")
    pa.add_argument("files", nargs="+")
    lo = sub.add_parser("locate", help="districts and hazard zones at a point (JSON)")
    lo.add_argument("lat", type=float)
    lo.add_argument("lon", type=float)
    su = sub.add_parser("subscribe", help="add or update a subscription")
    su.add_argument("--channel", required=True)
    su.add_argument("--address", required=True, help="chat id, e-mail address…")
    su.add_argument("--area", action="append", default=[], help="district name or code, zone, JMA code (repeatable)")
    su.add_argument("--lat", type=float, help="location (with --lon): follow its district and hazard zones")
    su.add_argument("--lon", type=float)
    su.add_argument("--language", default="ja", choices=["ja", "ja-easy", "en"])
    su.add_argument("--name", default="")
    su.add_argument("--test-recipient", action="store_true", help="also receives exercise/test traffic")
    ig = sub.add_parser("ingest", help="store and fan out JMA telegrams from files, as if they came from the feed")
    ig.add_argument("files", nargs="+")
    ap = sub.add_parser("approve", help="release an alert held for approval")
    ap.add_argument("alert_id", type=int)
    au = sub.add_parser("audience", help="districts an alert (JMA or CAP XML) covers and subscribers it reaches")
    au.add_argument("file")
    sub.add_parser("relocate", help="recompute subscribers' districts and zones after a geo layer change")
    sc = sub.add_parser("standin-chat", help="be a resident talking to the bot on the Telegram stand-in (demo)")
    sc.add_argument("url", help="the stand-in's base URL, as `dispatcher demo` prints it")
    sc.add_argument("chat", nargs="?", default="300001", help="the resident's chat id (default 300001)")
    accounts_cli.add_parsers(sub)
    xc = sub.add_parser("x-cost", help="the price of an alert's X post, with and without the link (JSON)")
    xc.add_argument("alert", help="a JMA or CAP file, or a stored alert's public id")
    xc.add_argument("--language", default="ja")
    _config_everywhere(p)
    return p


def _config_everywhere(parser: argparse.ArgumentParser) -> None:
    """``--config`` is taken after the command too (``dispatcher status --config F``), at every level.

    SUPPRESS as the default: a subcommand that is not given it leaves the top level's value alone.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if not any("--config" in a.option_strings for a in child._actions):
                    child.add_argument("--config", "-c", default=argparse.SUPPRESS, help="configuration file")
                _config_everywhere(child)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.file or args.config)
    if args.command == "parse":
        return _parse(args.files)
    if args.command == "standin-chat":
        from dispatcher.standins.telegram_chat import converse

        return asyncio.run(converse(args.url, args.chat))
    try:
        settings = load(args.config)
    except ConfigError as exc:
        print(f"dispatcher: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "locate":
        return _locate(settings, args.lat, args.lon)
    logs.setup(settings.service.log_level, settings.service.log_format)
    commands: dict[str, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "run": _run,
        "demo": _demo,
        "migrate": _migrate,
        "status": reading_cli.status,
        "deliveries": reading_cli.deliveries,
        "reconcile": reading_cli.reconcile,
        "channel": _channel,
        "subscribe": _subscribe,
        "approve": _approve,
        "ingest": _ingest,
        "audience": _audience,
        "relocate": _relocate,
        "user": accounts_cli.user,
        "audit": accounts_cli.audit,
        "x-cost": _x_cost,
    }
    try:
        return asyncio.run(commands[args.command](settings, args))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        log.error("%s failed: %s", args.command, exc)
        return 1


def _check_config(path: str | None) -> int:
    from dispatcher.app import preflight

    try:
        settings = load(path)
        preflight(settings)
    except ConfigError as exc:
        print(f"dispatcher: configuration error: {exc}", file=sys.stderr)
        return 2
    enabled = ", ".join(c.name for c in settings.enabled_channels()) or "none"
    print(f"configuration OK: {' + '.join(settings.files)} (channels enabled: {enabled})")
    return 0


def _parse(files: list[str]) -> int:
    """One JSON line per file; exit 1 when any file failed or could not be read."""
    from sources.jma.cli import is_failure, parse_files

    failed = False
    for obj in parse_files(files):
        failed |= is_failure(obj)
        print(json.dumps(obj, ensure_ascii=False), flush=True)
    return 1 if failed else 0


def _locate(settings: Settings, lat: float, lon: float) -> int:
    from dispatcher.targeting import geo_index
    from geo.cli import locate_json

    try:
        found = locate_json(lat, lon, geo_index(settings.geo))
    except ValueError as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(found, ensure_ascii=False, indent=2))
    return 0


async def _run(settings: Settings, _args: argparse.Namespace) -> int:
    from dispatcher.app import Service, run_forever

    await run_forever(Service(settings))
    return 0


async def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from dispatcher.demo import Demo

    demo = Demo(settings, once=args.once, port=args.port, interval=args.interval)
    demo.started = STARTED
    return await demo.run()


async def _dsn(settings: Settings) -> str:
    """The database the configuration names, else a running demo's, else the embedded one (started if need be).

    A running ``dispatcher demo`` (``<state_dir>/demo.json``, :mod:`dispatcher.demostate`) is
    read when neither ``DATABASE_URL`` nor ``[database]`` names another database; stderr says so.
    """
    from dispatcher import demostate
    from dispatcher.store import db

    name = settings.database.embedded_database
    demo = demostate.in_use(settings)
    if demo is not None:
        print(
            f"dispatcher: reading the running demo's database {demo.database!r} (pid {demo.pid}, {demo.path});"
            " set DATABASE_URL or [database] to read another",
            file=sys.stderr,
        )
        name = demo.database
    return await db.resolve_dsn(settings.database_url(), settings.service.state_dir, name)


async def _connect(settings: Settings) -> Any:
    from dispatcher.store import db

    dsn = await _dsn(settings)
    conn = await db.connect(dsn)
    await db.migrate(conn)
    return conn


async def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from dispatcher.store import db

    dsn = await _dsn(settings)
    conn = await db.connect(dsn)
    try:
        applied = await db.migrate(conn)
    finally:
        await conn.close()
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def _operator() -> str:
    """Who acts: the OS user (and, under sudo, who ran sudo)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = f"uid {os.getuid()}"
    sudo = os.environ.get("SUDO_USER")
    return f"{sudo} (sudo as {user})" if sudo and sudo != user else user


async def _channel(settings: Settings, args: argparse.Namespace) -> int:
    from channels import REGISTRY
    from dispatcher import status
    from dispatcher.model import JST
    from dispatcher.store import audit, outbox, reports

    if args.name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        print(f"dispatcher: unknown channel {args.name!r}; known channels: {known}", file=sys.stderr)
        return 2
    if args.action == "pause" and args.seconds is not None and not 0 < args.seconds < math.inf:
        print(f"dispatcher: --for must be a positive number of seconds, not {args.seconds:g}", file=sys.stderr)
        return 2
    by = _operator()
    conn = await _connect(settings)
    try:
        if args.action == "pause":
            held = await outbox.hold_channel(conn, args.name, seconds=args.seconds, by=by, reason=args.reason)
            until = (
                f"until {held.held_until.astimezone(JST):%Y-%m-%d %H:%M:%S} JST"
                if held.held_until is not None
                else "until resumed"
            )
            print(f"{args.name} paused by {by} {until}" + (f": {args.reason}" if args.reason else ""))
            log.info(
                "channel paused by an operator",
                extra={"channel": args.name, "by": by, "reason": args.reason, "until": until},
            )
        else:
            before = [p for p in await reports.channel_pauses(conn) if p["channel"] == args.name]
            due = await outbox.resume_channel(conn, args.name, by=by, reason=args.reason)
            print(f"{args.name} resumed by {by}; {due} queued deliveries the pauses had put off are due now")
            for p in before:
                print(f"  ended: {status.describe_pause(p)}")
            log.info("channel resumed by an operator", extra={"channel": args.name, "by": by, "reason": args.reason})
        # The staff console's audit log records it too, beside its own pauses and resumes.
        await audit.append(
            conn,
            actor=f"cli:{by}",
            role="cli",
            action=f"channel.{args.action}",
            target=f"channel:{args.name}",
            address="cli",
            after={"reason": args.reason, "seconds": getattr(args, "seconds", None)},
        )
    finally:
        await conn.close()
    print("every daemon follows within seconds")
    return 0


async def _subscribe(settings: Settings, args: argparse.Namespace) -> int:
    from dispatcher.locations import subscribe_location
    from dispatcher.store.subscribers import areas_of, subscribe
    from dispatcher.targeting import geo_index, resolve_choices

    located = args.lat is not None and args.lon is not None
    if (args.lat is None) != (args.lon is None) or not (args.area or located):
        print("dispatcher: subscribe needs --area, or --lat with --lon", file=sys.stderr)
        return 2
    index = geo_index(settings.geo)
    try:
        areas = resolve_choices(args.area, index)
        location = index.locate(args.lat, args.lon) if located else None
    except ValueError as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return 2
    if location is not None and not location.districts:
        print(f"dispatcher: warning: {args.lat},{args.lon} lies in no district of the city", file=sys.stderr)
    common: dict[str, Any] = {
        "channel": args.channel,
        "address": args.address,
        "areas": areas,
        "language": args.language,
        "display_name": args.name,
        "test_recipient": args.test_recipient,
    }
    conn = await _connect(settings)
    try:
        if located:
            sid = await subscribe_location(conn, lat=args.lat, lon=args.lon, index=index, **common)
        else:
            sid = await subscribe(conn, **common)
        follows = await areas_of(conn, sid)
    finally:
        await conn.close()
    print(f"subscription {sid}: {args.channel} {args.address} → {', '.join(follows)}")
    return 0


async def _audience(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from dispatcher.store.subscribers import audience
    from dispatcher.targeting import GeoExpander, default_targeter, describe, geo_index, read_alert

    try:
        alert = read_alert(await asyncio.to_thread(Path(args.file).read_bytes), url=args.file)
    except ValueError as exc:
        print(f"dispatcher: {args.file}: {exc}", file=sys.stderr)
        return 1
    index = geo_index(settings.geo)
    targets, _unknown = default_targeter(index=index).target_codes(alert)
    conn = await _connect(settings)
    try:
        per_channel = await audience(conn, targets, public=alert.is_public)
    finally:
        await conn.close()
    report = {"file": args.file, **describe(alert, GeoExpander(index))}
    report |= {"subscribers": sum(per_channel.values()), "by_channel": dict(per_channel)}
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


async def _x_cost(settings: Settings, args: argparse.Namespace) -> int:
    from dispatcher.publication.xcost import x_cost

    return await x_cost(settings, args.alert, args.language, _connect)


async def _relocate(settings: Settings, _args: argparse.Namespace) -> int:
    from dispatcher.locations import relocate_all
    from dispatcher.targeting import geo_index

    index = geo_index(settings.geo)
    conn = await _connect(settings)
    try:
        n = await relocate_all(conn, index)
    finally:
        await conn.close()
    print(f"relocated {n} subscription(s) with layers {index.version}")
    return 0


def _channel_names(settings: Settings) -> tuple[list[str], list[str]]:
    """The enabled channels, and those of them that also post once per alert (as the daemon has them)."""
    from channels import load_channel_class

    per_person: list[str] = []
    broadcast: list[str] = []
    for cs in settings.enabled_channels():
        cls: Any = load_channel_class(cs.name)
        per_person.append(cs.name)
        if cls.broadcast:
            broadcast.append(cs.name)
    return per_person, broadcast


async def _approve(settings: Settings, args: argparse.Namespace) -> int:
    from dispatcher.pipeline import Pipeline
    from dispatcher.store import db
    from dispatcher.targeting import default_targeter

    dsn = await _dsn(settings)
    pool = await db.create_pool(dsn, min_size=1, max_size=2)
    try:
        per_person, broadcast = _channel_names(settings)
        # The daemon's targeter: the recipients' places come from the geo layers too.
        targeter = await asyncio.to_thread(default_targeter, settings.geo)
        pipeline = Pipeline(pool, targeter=targeter, channels=per_person, broadcast_channels=broadcast)
        try:
            result = await pipeline.release(args.alert_id)
        except (LookupError, ValueError) as exc:
            print(f"dispatcher: {exc}", file=sys.stderr)
            return 1
        from dispatcher.store import audit

        async with pool.acquire() as conn:
            await audit.append(
                conn,
                actor=f"cli:{_operator()}",
                role="cli",
                action="held.release",
                target=f"alert:{args.alert_id}",
                address="cli",
                after={"deliveries": result.deliveries},
            )
    finally:
        await pool.close()
    print(f"alert {args.alert_id} released: {result.deliveries} deliveries queued")
    return 0


async def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    """Each file goes the feed's own way (claim, parse, store, fan out); one JSON line per file.

    A file is claimed as a document by a digest of its bytes, so replaying the same
    file twice stores it once, and its alert is deduplicated against the feed's by
    (sender, identifier). Exit 1 when any file could not be read or was refused.
    """
    import hashlib
    from pathlib import Path

    from dispatcher.context import ServiceContext
    from dispatcher.pipeline import Pipeline
    from dispatcher.store import db, documents
    from dispatcher.targeting import default_targeter
    from sources.jma.feed import SOURCE, ingest_document

    dsn = await _dsn(settings)
    conn = await db.connect(dsn)
    try:
        await db.migrate(conn)
    finally:
        await conn.close()
    pool = await db.create_pool(dsn, min_size=1, max_size=4)
    failed = False
    try:
        per_person, broadcast = _channel_names(settings)
        targeter = await asyncio.to_thread(default_targeter, settings.geo)
        ctx = ServiceContext(pool, Pipeline(pool, targeter=targeter, channels=per_person, broadcast_channels=broadcast))
        for name in args.files:
            path = Path(name)
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                print(json.dumps({"file": name, "error": f"cannot read: {exc.strerror or exc}"}, ensure_ascii=False))
                failed = True
                continue
            url = f"file:sha256:{hashlib.sha256(data).hexdigest()}"
            doc_id = await ctx.claim_document(SOURCE, url)
            if doc_id is None:
                print(json.dumps({"file": name, "outcome": "already stored", "document": url}, ensure_ascii=False))
                continue
            outcome = await ingest_document(ctx, doc_id, data, url)
            async with pool.acquire() as c:
                row = await documents.document_alert(c, doc_id)
            report: dict[str, Any] = {"file": name, "outcome": outcome, "document": url}
            if row is not None and row["id"] is not None:
                report |= {"alert_id": row["id"], "public_id": row["public_id"], "state": row["state"]}
                report["deliveries"] = int(row["deliveries"])
            elif row is not None and row["error"]:
                report["error"] = row["error"]
            failed |= outcome == "error"
            print(json.dumps(report, ensure_ascii=False), flush=True)
    finally:
        await pool.close()
    return 1 if failed else 0
