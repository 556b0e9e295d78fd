"""``dispatcher status``'s tables line up in a terminal whatever the script: padding by display width."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.cells import cell_len

from dispatcher.status import fit, format_deliveries, format_table
from dispatcher.store.reports import STATES, AlertSummary, DeliveryRow


def summary(i: int, event: str, kind: str = "VPWW54") -> AlertSummary:
    return {
        "id": i,
        "identifier": f"id-{i}",
        "public_id": f"20261204-{i:08d}",
        "source": "jma",
        "kind": kind,
        "event": event,
        "headline": "",
        "status": "actual",
        "msg_type": "alert",
        "state": "active",
        "priority": 1,
        "severity": "Severe",
        "sent": "2026-12-04T00:00:00+00:00",
        "received_at": "2026-12-04T00:00:01+00:00",
        "area_codes": [],
        "deliveries": {"telegram": {**dict.fromkeys(STATES, 0), "delivered": 3}},
    }


def test_fit_counts_columns_not_characters() -> None:
    assert fit("大雨警報", 10) == "大雨警報  " and cell_len(fit("大雨警報", 10)) == 10
    # A wide character that would straddle the edge is left out, and the gap padded.
    assert fit("大雨警報", 5) == "大雨 " and cell_len(fit("大雨警報", 5)) == 5
    assert fit("ｶﾀｶﾅ", 4) == "ｶﾀｶﾅ"  # half-width katakana take one column each
    assert fit("Ｒ０６", 6) == "Ｒ０６"  # full-width forms take two
    assert fit("7", 3, right=True) == "  7"


def test_the_deliveries_column_starts_at_the_same_column_on_every_row() -> None:
    events = ["大雨警報", "Heavy rain warning", "震源・震度に関する情報", "津波警報・注意報・予報ａ", "ｶﾀｶﾅ event"]
    text = format_table([summary(i + 1, e) for i, e in enumerate(events)])
    lines = text.splitlines()
    starts = {cell_len(line[: line.index("telegram")]) for line in lines[1:]}
    assert len(starts) == 1, text
    assert cell_len(lines[0][: lines[0].index("deliveries")]) == starts.pop()


def test_deliveries_table_masks_addresses_and_lines_up() -> None:
    now = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
    row: DeliveryRow = {
        "id": 1,
        "channel": "email",
        "address": "yamada.hanako@example.jp",
        "language": "ja",
        "state": "failed",
        "attempts": 2,
        "remote_id": None,
        "last_error": "550 宛先不明",
        "created_at": now,
        "updated_at": now,
        "not_before": now,
    }
    text = format_deliveries([row, {**row, "id": 22, "channel": "telegram", "address": "123456789"}])
    assert "yamada.hanako@example.jp" not in text and "123456789" not in text
    lines = text.splitlines()
    assert len({cell_len(line[: line.index("12-04")]) for line in lines[1:]}) == 1, text
    assert "12-04 12:00:00" in text  # JST
