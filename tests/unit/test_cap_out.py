"""Every CAP document we publish validates against the OASIS CAP 1.2 schema, for every real JMA sample."""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

from lxml import etree

from channels.templates import Templates
from dispatcher.model import MsgType
from dispatcher.publication.cap import cap_document
from sources.cap import parse_cap
from sources.jma.parser import parse_telegram
from sources.outcome import Parsed


@cache
def templates() -> Templates:
    return Templates.load()


def schema(shared_data: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(shared_data / "cap" / "cap12.xsd")))


def test_every_real_jma_sample_becomes_valid_cap_in_japanese_and_english(shared_data: Path) -> None:
    xsd = schema(shared_data)
    files = sorted((shared_data / "jma").rglob("*.xml"))
    assert len(files) > 100
    made = 0
    for i, path in enumerate(files):
        outcome = parse_telegram(path.read_bytes(), url=path.name)
        if not isinstance(outcome, Parsed):
            continue
        alert = replace(outcome.alert, public_id=f"20260101-{i:08d}")
        earlier = [replace(alert, public_id="20251231-earlier1")] if alert.msg_type is not MsgType.ALERT else []
        doc = cap_document(
            alert, templates(), sender="bousai@city.numazu.example", sender_name="沼津市",
            page_url=f"https://bousai.example/alerts/{alert.public_id}", replaces=earlier,
        )  # fmt: skip
        tree = etree.fromstring(doc)
        assert xsd.validate(tree), f"{path.name}: {xsd.error_log.last_error}"
        languages = tree.findall(
            "{urn:oasis:names:tc:emergency:cap:1.2}info/{urn:oasis:names:tc:emergency:cap:1.2}language"
        )
        assert [x.text for x in languages] == ["ja-JP", "en-US"]
        if earlier:
            assert tree.find("{urn:oasis:names:tc:emergency:cap:1.2}references") is not None
        # What we publish, our own CAP reader takes back (it refuses more than 1,000 areas).
        if len(alert.areas) * 2 <= 1000:  # areas of both info blocks
            back = parse_cap(doc)
            assert isinstance(back, Parsed), (path.name, back)
        made += 1
    assert made > 100


def test_an_update_references_what_it_replaces(shared_data: Path) -> None:
    path = next((shared_data / "cap").glob("v1dot2_appendix_adot1.xml"))
    alert = parse_cap(path.read_bytes())
    assert isinstance(alert, Parsed)
    first = replace(alert.alert, public_id="20260101-first001")
    update = replace(first, public_id="20260101-update01", msg_type=MsgType.UPDATE)
    doc = cap_document(
        update, templates(), sender="s@example", sender_name="x", page_url="https://e/a", replaces=[first]
    )
    tree = etree.fromstring(doc)
    assert schema(shared_data).validate(tree), schema(shared_data).error_log
    refs = tree.findtext("{urn:oasis:names:tc:emergency:cap:1.2}references")
    assert refs is not None and refs.startswith("s@example,numazu-20260101-first001,")
