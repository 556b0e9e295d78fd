"""Hand-built alerts shared by the template and channel tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from dispatcher.model import Alert, Area, Certainty, MsgType, Priority, Severity, Status, Urgency

JST = timezone(timedelta(hours=9))


def tsunami_warning(**changes: object) -> Alert:
    alert = Alert(
        identifier="20261129201500_0_VTSE41_270000",
        sender="気象庁",
        sent=datetime(2026, 11, 29, 20, 15, tzinfo=JST),
        status=Status.ACTUAL,
        msg_type=MsgType.ALERT,
        event="津波警報",
        severity=Severity.SEVERE,
        urgency=Urgency.IMMEDIATE,
        certainty=Certainty.LIKELY,
        headline="東海地方の沿岸に津波警報を発表しました。",
        description="静岡県では、ただちに避難してください。",
        source="jma",
        priority=Priority.CRITICAL,
        kind="VTSE41",
        areas=(
            Area(description="静岡県", codes=("440",), details={"height": "3m"}),
            Area(description="沼津市", codes=("2220300",)),
        ),
    )
    return replace(alert, **changes)  # type: ignore[arg-type]
