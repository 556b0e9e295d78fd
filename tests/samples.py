"""Hand-built alerts shared by the tests (one factory with plain defaults, and named samples), and subscribers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg

from dispatcher.model import Alert, Area, Certainty, MsgType, Priority, Severity, Status, Urgency

JST = timezone(timedelta(hours=9))
NUMAZU = "2220300"


def make_alert(identifier: str = "test-1", **fields: Any) -> Alert:
    """An actual 大雨警報-like alert for 沼津市; ``fields`` override any Alert field."""
    values: dict[str, Any] = {
        "identifier": identifier,
        "sender": "test",
        "sent": datetime(2026, 11, 29, 2, 0, tzinfo=UTC),
        "status": Status.ACTUAL,
        "msg_type": MsgType.ALERT,
        "event": "大雨警報",
        "severity": Severity.SEVERE,
        "urgency": Urgency.IMMEDIATE,
        "certainty": Certainty.LIKELY,
        "headline": "",
        "source": "test",
        "areas": (Area("沼津市", (NUMAZU,)),),
    }
    values.update(fields)
    return Alert(**values)


def tsunami_warning(**changes: object) -> Alert:
    alert = make_alert(
        "20261129201500_0_VTSE41_270000",
        sender="気象庁",
        sent=datetime(2026, 11, 29, 20, 15, tzinfo=JST),
        event="津波警報",
        headline="東海地方の沿岸に津波警報を発表しました。",
        description="静岡県では、ただちに避難してください。",
        source="jma",
        priority=Priority.CRITICAL,
        kind="VTSE41",
        public_id="20261129-tsnm3kei",
        areas=(
            Area(description="静岡県", codes=("440",), details={"height": "3m"}),
            Area(description="沼津市", codes=("2220300",)),
        ),
    )
    return replace(alert, **changes)  # type: ignore[arg-type]


async def add_subscribers(dsn: str, channel: str, addresses: Sequence[str], areas: Sequence[str] = (NUMAZU,)) -> None:
    """One subscriber (Japanese) with one subscription per address, for ``areas``."""
    conn = await asyncpg.connect(dsn)
    try:
        ids = await conn.fetch(
            "INSERT INTO subscribers (language) SELECT 'ja' FROM generate_series(1, $1) RETURNING id", len(addresses)
        )
        await conn.executemany(
            "INSERT INTO subscriptions (subscriber_id, channel, address, areas) VALUES ($1, $2, $3, $4)",
            [(r["id"], channel, a, list(areas)) for r, a in zip(ids, addresses, strict=True)],
        )
    finally:
        await conn.close()


def telegram_daemon_config(
    directory: Path, base_url: str, token_env: str, *, delivery: str = "", telegram: str = ""
) -> Path:
    """A daemon configuration in ``directory``: Telegram at ``base_url`` only, no JMA, no web.

    ``delivery`` and ``telegram`` are extra TOML lines for those sections.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "daemon.toml"
    path.write_text(
        f"""
[service]
state_dir = "{directory}"
[web]
enabled = false
[jma]
enabled = false
[delivery]
poll_interval = 0.2
{delivery}
[channels.telegram]
enabled = true
token_env = "{token_env}"
base_url = "{base_url}"
{telegram}
""",
        encoding="utf-8",
    )
    return path
