"""``dispatcher user add|passwd|disable|enable|list`` and ``dispatcher audit``: accounts and the log at a shell.

The first admin is made here (``dispatcher user add NAME --role admin``); after that
admins may also manage accounts in the console (``/console/staff``). A password is read
twice from standard input (without echo at a terminal), or once from ``--password-file``;
it never appears in the arguments, where ``ps`` would show it. Every change is in the
audit log as done by ``cli:<OS user>``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from dispatcher.console import accounts
from dispatcher.console.accounts import AccountError, Actor, Role
from dispatcher.console.auditlog import JST, csv_text
from dispatcher.settings import Settings


def add_parsers(sub: Any) -> None:
    """Register ``user`` and ``audit`` on the CLI's subparsers."""
    u = sub.add_parser("user", help="staff accounts of the console: add, passwd, disable, enable, list")
    actions = u.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="a new account (password twice on stdin, or --password-file)")
    add.add_argument("name", help="username: lower-case letters, digits, . _ -")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--display-name", default="", help="the person's name, shown to other staff")
    add.add_argument("--password-file", help="read the password from the first line of this file")
    pw = actions.add_parser("passwd", help="set a new password; every session of the account ends")
    pw.add_argument("name")
    pw.add_argument("--password-file")
    for verb, what in (("disable", "no more logins; every session ends"), ("enable", "allow logins again")):
        p = actions.add_parser(verb, help=what)
        p.add_argument("name")
    ls = actions.add_parser("list", help="every account, its role and whether it is active")
    ls.add_argument("--json", action="store_true")
    a = sub.add_parser("audit", help="the audit log of staff actions (--csv: as CSV)")
    a.add_argument("--csv", action="store_true", help="CSV with a header line, as /audit.csv serves it")
    a.add_argument("--since", help="entries at or after this time (ISO 8601; without an offset: JST)")
    a.add_argument("--json", action="store_true", help="a JSON array of the entries")


def cli_actor() -> Actor:
    """The OS user running the command (and, under sudo, who ran sudo), as the audit log names them."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = f"uid {os.getuid()}"
    sudo = os.environ.get("SUDO_USER")
    name = f"{sudo} (sudo as {user})" if sudo and sudo != user else user
    return Actor(f"cli:{name}", role="cli", address="cli")


def read_password(password_file: str | None) -> str:
    """The new password: the file's first line, or typed twice (stdin), which must agree."""
    if password_file:
        lines = Path(password_file).read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    if sys.stdin.isatty():
        first = getpass.getpass("new password: ")
        second = getpass.getpass("again: ")
    else:
        first, second = sys.stdin.readline().rstrip("\r\n"), sys.stdin.readline().rstrip("\r\n")
    if first != second:
        raise AccountError("the two passwords differ")
    return first


async def user(settings: Settings, args: argparse.Namespace) -> int:
    from dispatcher.cli import _connect  # the CLI's own connection (migrated)
    from dispatcher.store import staff

    actor = cli_actor()
    try:
        password = read_password(args.password_file) if args.action in ("add", "passwd") else ""
    except (AccountError, OSError) as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return 2
    conn = await _connect(settings)
    try:
        if args.action == "list":
            rows = await staff.list_staff(conn)
            if args.json:
                print(json.dumps([_row(r) for r in rows], ensure_ascii=False, indent=2))
            for r in rows if not args.json else ():
                state = "active" if r["active"] else "DISABLED"
                seen = f"last seen {r['last_seen'].astimezone(JST):%Y-%m-%d %H:%M} JST" if r["last_seen"] else "never"
                print(f"{r['username']:<20} {r['role']:<9} {state:<8} {seen}  {r['display_name']}")
            return 0
        if args.action == "add":
            await accounts.add_user(conn, actor, args.name, Role(args.role), password, args.display_name)
            print(f"account {args.name} ({args.role}) added")
        elif args.action == "passwd":
            await accounts.set_password(conn, actor, args.name, password)
            print(f"password of {args.name} changed; its sessions ended")
        else:
            await accounts.set_active(conn, actor, args.name, args.action == "enable")
            print(f"account {args.name} {args.action}d" + ("; its sessions ended" if args.action == "disable" else ""))
    except AccountError as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    return 0


def _row(r: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dict(r).items()}


async def audit(settings: Settings, args: argparse.Namespace) -> int:
    from dispatcher.cli import _connect
    from dispatcher.store import audit as audit_store

    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            print(f"dispatcher: --since {args.since!r} is not an ISO 8601 time", file=sys.stderr)
            return 2
        since = since if since.tzinfo else since.replace(tzinfo=JST)
    conn = await _connect(settings)
    try:
        rows = await audit_store.entries(conn, since=since)
    finally:
        await conn.close()
    if args.csv:
        sys.stdout.write(csv_text(rows))
        return 0
    if args.json:
        print(json.dumps([_row(r) for r in rows], ensure_ascii=False, indent=2))
        return 0
    for r in rows:
        print(f"{r['at'].astimezone(JST):%Y-%m-%d %H:%M:%S} {r['actor']:<16} {r['action']:<14} {r['target']}")
    return 0
