"""Delivery truth: what the providers confirm against what the database calls delivered.

Providers have answered 200 for messages they never sent (LINE on 2022-07-28 and
2022-10-08). ``dispatcher reconcile [--since ISO]`` takes every delivery recorded as
delivered since then (default: the last 24 hours) and asks its channel
(:meth:`channels.base.Channel.confirm`):

* a delivery without the provider's id, on a channel whose provider gives one, is a
  mismatch (``no_provider_id``), unless the channel explains it (a broadcast channel
  skips alerts that do not concern the city: ``skipped``);
* where the provider can be read back, what it no longer has is a mismatch
  (``missing``): Mastodon's ``GET /api/v1/statuses/:id``; a post a cancel deleted is
  ``retracted``. Telegram's Bot API has no way to read a sent message back, e-mail
  relays none either: those are ``unchecked``. At most :data:`READ_BACK_LIMIT` per
  channel and run are read back (the newest), so the posting budget stays for posts;
* a read-back that failed (timeout, rate limit) is ``unverifiable``, not a mismatch.

Exit status: 1 on any mismatch, else 3 if anything was unverifiable, else 0. The read
model :func:`reconcile_with` is what a dashboard panel shows too (:meth:`Report.as_json`).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from channels import REGISTRY, load_channel_class
from channels.base import MISMATCHES, Channel, ChannelContext, Confirmation, Sent, http_session
from channels.templates import Templates, local_codes_for
from dispatcher.model import JST
from dispatcher.settings import Settings
from dispatcher.store import alerts as alert_store
from dispatcher.store import reconcile as store

DEFAULT_WINDOW = timedelta(hours=24)
READ_BACK_LIMIT = 200
# Mismatches listed one by one (the counts cover them all).
LISTED = 100


@dataclass(slots=True)
class Finding:
    """One delivery whose verdict is worth a line: a mismatch or an unverifiable read-back."""

    delivery_id: int
    alert_id: int
    channel: str
    remote_id: str | None
    verdict: str
    detail: str


@dataclass(slots=True)
class Report:
    """The outcome of one reconciliation: counts per channel and verdict, and the findings."""

    since: datetime
    checked: int = 0
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def mismatches(self) -> int:
        return sum(c[v] for c in self.counts.values() for v in MISMATCHES)

    @property
    def unverifiable(self) -> int:
        return sum(c["unverifiable"] for c in self.counts.values())

    @property
    def exit_code(self) -> int:
        return 1 if self.mismatches else 3 if self.unverifiable else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": not self.mismatches,
            "since": self.since.isoformat(),
            "checked": self.checked,
            "mismatches": self.mismatches,
            "unverifiable": self.unverifiable,
            "channels": {ch: dict(sorted(c.items())) for ch, c in sorted(self.counts.items())},
            "findings": [asdict(f) for f in self.findings[:LISTED]],
        }


def parse_since(text: str | None, now: datetime | None = None) -> datetime:
    """``--since``: ISO 8601 (without an offset: JST); default 24 hours ago."""
    if not text:
        return (now or datetime.now(UTC)) - DEFAULT_WINDOW
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r} is not an ISO 8601 time (e.g. 2026-12-04T09:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=JST)


def _channels(settings: Settings, names: set[str], context: ChannelContext) -> dict[str, Channel | None]:
    """The channels to ask: as configured where enabled; else built from defaults, never to be read back from."""
    enabled = {cs.name: cs for cs in settings.enabled_channels()}
    out: dict[str, Channel | None] = {}
    for name in names:
        if name not in REGISTRY:
            out[name] = None
            continue
        cls: Any = load_channel_class(name)
        try:
            options = enabled[name].options if name in enabled else cls.config_class()
            out[name] = cls(options, context)
        except (TypeError, ValueError):
            out[name] = None
    return out


async def reconcile_with(settings: Settings, conn: asyncpg.Connection, *, since: datetime) -> Report:
    """Compare the deliveries recorded as delivered since ``since`` with what their providers say."""
    rows = await store.delivered_since(conn, since)
    alerts = await alert_store.alerts_by_ids(conn, {r["alert_id"] for r in rows})
    report = Report(since=since, checked=len(rows))
    by_channel: dict[str, list[asyncpg.Record]] = {}
    for r in rows:
        by_channel.setdefault(r["channel"], []).append(r)
    templates = Templates.load(local_area_codes=local_codes_for(settings.service.area_codes))
    enabled = {cs.name for cs in settings.enabled_channels()}
    session = http_session()
    context = ChannelContext(templates=templates, public_url=settings.service.public_url, session=session)
    try:
        channels = _channels(settings, set(by_channel), context)
        for name, items in sorted(by_channel.items()):
            channel = channels[name]
            sent = [
                Sent(r["id"], r["remote_id"], r["language"], alerts.get(r["alert_id"]), r["retracted"]) for r in items
            ]
            verdicts: dict[int, Confirmation] = {}
            if channel is None:
                why = f"{name} is not configured here" if name in REGISTRY else f"unknown channel {name!r}"
                verdicts = {s.delivery_id: Confirmation("unchecked", why) for s in sent}
            else:
                # Only a configured channel is read back (its base_url, its token), the newest first.
                ask = sorted((s for s in sent if s.remote_id), key=lambda s: -s.delivery_id)[:READ_BACK_LIMIT]
                if name in enabled and ask:
                    verdicts.update(await channel.confirm(ask))
                for s in sent:
                    if s.delivery_id not in verdicts:
                        verdicts[s.delivery_id] = channel.unconfirmed(s)
            counts = report.counts.setdefault(name, Counter())
            for r in items:
                v = verdicts[r["id"]]
                counts[v.verdict] += 1
                if v.verdict in (*MISMATCHES, "unverifiable"):
                    report.findings.append(Finding(r["id"], r["alert_id"], name, r["remote_id"], v.verdict, v.detail))
        for channel in channels.values():
            if channel is not None:
                with contextlib.suppress(Exception):
                    await channel.close()
    finally:
        await session.close()
    report.findings.sort(key=lambda f: (f.verdict not in MISMATCHES, f.delivery_id))
    return report


def format_report(report: Report) -> str:
    """The report for people: one line per channel, then each mismatch."""
    since = report.since.astimezone(JST)
    lines = [f"deliveries recorded as delivered since {since:%Y-%m-%d %H:%M:%S} JST: {report.checked}"]
    for name, counts in sorted(report.counts.items()):
        lines.append(f"  {name}: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
    for f in report.findings[:LISTED]:
        lines.append(
            f"  {f.verdict.upper()}: delivery {f.delivery_id} (alert {f.alert_id}, {f.channel}"
            f"{', ' + f.remote_id if f.remote_id else ''}): {f.detail}"
        )
    if len(report.findings) > LISTED:
        lines.append(f"  … and {len(report.findings) - LISTED} more (--json lists the first {LISTED} too)")
    if report.mismatches:
        lines.append(f"MISMATCH: {report.mismatches} delivery(ies) the database calls delivered are not confirmed")
    elif report.unverifiable:
        lines.append(f"no mismatch found, but {report.unverifiable} could not be read back now")
    else:
        lines.append("OK: no mismatch")
    return "\n".join(lines)
