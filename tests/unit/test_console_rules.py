"""The console's pure rules: providers' length counts, roles, passwords, templates, expiry, the CSV export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from channels.lengths import LIMITS, graphemes, mastodon, utf16_units, x_weighted
from dispatcher.console import compose
from dispatcher.console.accounts import Role, password_problem, username_problem
from dispatcher.console.auditlog import csv_text
from dispatcher.console.messages import MessagesError, load_messages
from geo import default_index


def test_each_provider_counts_as_it_documents() -> None:
    url = "https://bousai.city.numazu.example/alerts/20261205-k3x9q2mt"
    assert x_weighted("避難指示") == 8 and x_weighted("abc") == 3 and x_weighted(f"見て {url}") == 4 + 1 + 23
    assert mastodon(f"a {url}") == 2 + 23
    assert utf16_units("避難😀") == 4, "an emoji outside the BMP is two UTF-16 units"
    assert graphemes("👨‍👩‍👧") == 1 and graphemes("🇯🇵🇯🇵") == 2 and graphemes("が") == 1 and graphemes("\r\n") == 1
    assert {k: v.maximum for k, v in LIMITS.items()} == {
        "telegram": 4096, "line": 5000, "x": 280, "bluesky": 300, "mastodon": 500,
    }  # fmt: skip


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.allows(Role.APPROVER) and Role.APPROVER.allows(Role.AUTHOR) and Role.AUTHOR.allows(Role.VIEWER)
    assert not Role.AUTHOR.allows(Role.APPROVER) and not Role.VIEWER.allows(Role.AUTHOR)


def test_usernames_and_passwords() -> None:
    assert username_problem("kikikanri-01") is None and username_problem("Bad Name") is not None
    assert password_problem("short") is not None
    assert password_problem("yamada-is-my-password", "yamada") is not None
    assert password_problem("aaaaaaaaaaaaaaa") is not None
    assert password_problem("correct horse battery staple") is None


def test_the_packaged_templates_have_every_kind_the_city_needs_in_japanese() -> None:
    messages = load_messages()
    assert list(messages.kinds) == [
        "避難指示",
        "高齢者等避難",
        "緊急安全確保",
        "避難所開設",
        "解除",
        "給水",
        "停電",
        "お知らせ",
    ]
    assert [messages.kinds[k].level for k in ("高齢者等避難", "避難指示", "緊急安全確保")] == [3, 4, 5]
    assert set(messages.retractions) == {"取消", "誤報"}


def test_a_template_with_an_unknown_placeholder_is_refused(tmp_path: object) -> None:
    from pathlib import Path

    extra = Path(str(tmp_path)) / "m.toml"
    extra.write_text('[kinds."避難指示".ja]\nheadline = "{place}に避難指示"\ntext = ""\n', encoding="utf-8")
    with pytest.raises(MessagesError, match=r"unknown placeholder \{place\}"):
        load_messages(extra)


def test_areas_prefill_and_the_whole_city() -> None:
    geo = default_index()
    tokens = compose.clean_areas(["numazu-heda", "bogus", "numazu-nishiura", "zone:landslide"], geo)
    assert tokens == ["numazu-nishiura", "numazu-heda", "zone:landslide"]
    assert compose.area_names(tokens, geo) == "西浦、戸田、土砂災害警戒区域 全域"
    assert compose.area_names(tokens, geo, "en") == "Nishiura, Heda, all landslide warning zones"
    areas = compose.to_areas(tokens, geo, level=4)
    assert [a.codes for a in areas[:2]] == [("numazu-nishiura",), ("numazu-heda",)] and len(areas[2].codes) == 81
    assert areas[0].details["level"] == "4"
    [city] = compose.to_areas(["city", "numazu-heda"], geo)
    assert city.codes[0] == "2220300" and len(city.codes) == 1 + len(geo.districts)


def test_expiry_is_ahead_and_within_the_limit() -> None:
    now = datetime.now(UTC)
    texts = {"ja": ("見出し", "本文")}

    def problems(expires: datetime | None) -> list[str]:
        draft = compose.Draft("避難指示", ("numazu-heda",), texts, expires)
        return compose.check_draft(draft, known_kind=True, now=now, max_hours=24)

    assert problems(now + timedelta(hours=6)) == []
    assert "in the past" in problems(now - timedelta(minutes=1))[0]
    assert "at most 24 hours" in problems(now + timedelta(hours=24, minutes=1))[0]
    assert problems(None)


def test_the_csv_export_neutralises_formulas() -> None:
    row = {"id": 1, "at": datetime(2026, 6, 1, tzinfo=UTC), "actor": "=cmd|' /C calc'!A0", "role": "admin",
           "action": "login", "target": "@x", "address": "127.0.0.1", "before": None, "after": {"a": 1}}  # fmt: skip
    text = csv_text([row])
    assert text.splitlines()[0] == "id,at,actor,role,action,target,address,before,after"
    assert "'=cmd" in text and ",'@x," in text and "2026-06-01T09:00:00.000+09:00" in text
