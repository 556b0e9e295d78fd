"""Telegrams missing what identifies them are malformed; text fields are capped (issue 17 item 10).

The required elements are the ones the jmx schemas require in Control and Head
(``shared/data/jma/schema``); every real telegram of ``shared/data/jma`` has them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sources.jma import AreaCodes, parse_telegram
from sources.jma.parser import (
    MAX_AREA_NAME_CHARS,
    MAX_DETAIL_CHARS,
    MAX_HEADLINE_CHARS,
    MAX_IDENTITY_CHARS,
    MAX_TEXT_CHARS,
)
from sources.outcome import Failed, Parsed, Unsupported

WARNING = "official_samples/15_13_01_161226_VPWW54.xml"  # a real 大雨特別警報 (小笠原村)


def _all_telegrams(shared_data: Path) -> list[Path]:
    jma = shared_data / "jma"
    return sorted(
        p
        for sub in ("official_samples", "live_p2pquake", "live_noto2024", "live_2026")
        for p in (jma / sub).glob("*.xml")
        if not p.name.startswith("eqvol_feed_")
    )


def _drop(data: bytes, element: str) -> bytes:
    """``data`` without the first ``<element>…</element>`` (or ``<element/>``)."""
    pattern = rf"<{element}(?:\s[^>]*)?/>|<{element}(?:\s[^>]*)?>.*?</{element}>".encode()
    out, n = re.subn(pattern, b"", data, count=1, flags=re.S)
    assert n == 1, element
    return out


def test_no_real_telegram_is_refused(shared_data: Path) -> None:
    files = _all_telegrams(shared_data)
    assert len(files) == 424
    codes = AreaCodes.load()
    failed = [(p.name, o.error) for p in files if isinstance(o := parse_telegram(p.read_bytes(), codes=codes), Failed)]
    assert failed == []


def test_the_probe_telegram_is_refused_not_a_warning(shared_data: Path) -> None:
    # The probe: ReportDateTime, TargetDateTime, EventID and Serial removed from a real warning.
    data = (shared_data / "jma" / WARNING).read_bytes()
    for element in ("ReportDateTime", "TargetDateTime", "EventID", "Serial"):
        data = _drop(data, element)
    outcome = parse_telegram(data)
    assert isinstance(outcome, Failed), outcome
    for element in ("Head/ReportDateTime", "Head/TargetDateTime", "Head/EventID", "Head/Serial"):
        assert element in outcome.error


@pytest.mark.parametrize(
    "element",
    ["Title", "DateTime", "Status", "EditorialOffice", "PublishingOffice"],
)
def test_each_required_control_element(shared_data: Path, element: str) -> None:
    data = (shared_data / "jma" / WARNING).read_bytes()
    control, rest = data.split(b"</Control>", 1)
    outcome = parse_telegram(_drop(control, element) + b"</Control>" + rest)
    assert isinstance(outcome, Failed)
    assert f"Control/{element}" in outcome.error


@pytest.mark.parametrize(
    "element",
    ["ReportDateTime", "TargetDateTime", "EventID", "InfoType", "Serial", "InfoKind", "InfoKindVersion", "Headline"],
)
def test_each_required_head_element(shared_data: Path, element: str) -> None:
    data = (shared_data / "jma" / WARNING).read_bytes()
    head_at = data.index(b"<Head")
    outcome = parse_telegram(data[:head_at] + _drop(data[head_at:], element))
    assert isinstance(outcome, Failed)
    assert f"Head/{element}" in outcome.error


def test_empty_or_invalid_identity_fields(shared_data: Path) -> None:
    data = (shared_data / "jma" / WARNING).read_bytes()
    blank = data.replace(b"<InfoType>\xe7\x99\xba\xe8\xa1\xa8</InfoType>", b"<InfoType></InfoType>")
    assert blank != data
    outcome = parse_telegram(blank)
    assert isinstance(outcome, Failed) and "empty Head/InfoType" in outcome.error
    bad_time = re.sub(rb"<ReportDateTime>[^<]*<", b"<ReportDateTime>yesterday<", data, count=1)
    outcome = parse_telegram(bad_time)
    assert isinstance(outcome, Failed) and "Head/ReportDateTime" in outcome.error


def test_unsupported_family_must_be_complete_too(shared_data: Path) -> None:
    data = (shared_data / "jma/official_samples/01_01_01_091210_VGSK50.xml").read_bytes()
    assert isinstance(parse_telegram(data), Unsupported)
    assert isinstance(parse_telegram(_drop(data, "EditorialOffice")), Failed)


def test_huge_head_title_is_refused(shared_data: Path) -> None:
    data = (shared_data / "jma" / WARNING).read_bytes()
    head_at = data.index(b"<Head")
    head = data[head_at:]
    title = re.search(rb"<Title>[^<]*</Title>", head)
    assert title
    huge = head[: title.start()] + b"<Title>" + "大雨".encode() * 850_000 + b"</Title>" + head[title.end() :]
    outcome = parse_telegram(data[:head_at] + huge, max_bytes=8_000_000)
    assert isinstance(outcome, Failed)
    assert "Head/Title" in outcome.error and str(MAX_IDENTITY_CHARS) in outcome.error
    assert len(outcome.error) < 1_000


def test_free_text_is_capped(shared_data: Path) -> None:
    data = (shared_data / "jma" / WARNING).read_bytes()
    text = re.search(rb"<Headline>\s*<Text>", data)
    assert text
    long = "長".encode() * (MAX_HEADLINE_CHARS * 3)
    data = data[: text.end()] + long + data[text.end() :]
    name = b"<Name>\xe5\xb0\x8f\xe7\xac\xa0\xe5\x8e\x9f\xe6\x9d\x91</Name>"  # 小笠原村
    assert name in data
    data = data.replace(name, b"<Name>" + "村".encode() * (MAX_AREA_NAME_CHARS * 5) + b"</Name>")
    outcome = parse_telegram(data)
    assert isinstance(outcome, Parsed), outcome
    alert = outcome.alert
    assert len(alert.headline) == MAX_HEADLINE_CHARS and alert.headline.endswith("…")
    assert len(alert.description) <= MAX_TEXT_CHARS
    assert max(len(a.description) for a in alert.areas) == MAX_AREA_NAME_CHARS
    assert all(len(v) <= MAX_DETAIL_CHARS for a in alert.areas for v in a.details.values())
    assert alert.event == "大雨特別警報"  # the capped telegram is still the warning it was
