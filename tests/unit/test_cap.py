"""CAP parsing over the real OASIS, IPAWS, NWS and NOAA files in ../shared/data/cap."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.model import MsgType, Priority, Severity, Status
from sources.cap import parse_cap
from sources.outcome import Failed, Parsed, Unsupported


def cap_files(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "cap").glob("*.xml"))
    assert len(files) >= 19
    return files


def parsed(path: Path) -> Parsed:
    result = parse_cap(path.read_bytes(), url=str(path))
    assert isinstance(result, Parsed), result
    return result


def test_every_file_parses_or_is_reported(shared_data: Path) -> None:
    for path in cap_files(shared_data):
        result = parse_cap(path.read_bytes())
        if path.name.startswith("v1dot0"):
            assert result == Unsupported("1.0", "CAP 1.0 is not supported; senders should use CAP 1.2"), path
        else:
            assert isinstance(result, Parsed), (path, result)
            alert = result.alert
            assert alert.identifier and alert.sender and alert.sent.tzinfo is not None
            assert alert.source == "cap" and alert.kind in ("CAP1.1", "CAP1.2")


def test_update_with_circle_and_references(shared_data: Path) -> None:
    alert = parsed(shared_data / "cap" / "v1dot2_appendix_adot3.xml").alert
    assert alert.msg_type is MsgType.UPDATE
    assert alert.references == ("TRI13970876.1",)
    assert alert.event == "Earthquake" and alert.severity is Severity.MINOR and alert.priority is Priority.LOW
    (area,) = alert.areas
    assert area.circles == ((32.9525, -115.5527, 0.0),)
    assert alert.details["parameters"]["Magnitude"] == "3.4 Ml"


def test_polygon_and_geocodes(shared_data: Path) -> None:
    alert = parsed(shared_data / "cap" / "v1dot2_appendix_adot2.xml").alert
    (area,) = alert.areas
    assert len(area.polygons) == 1 and len(area.polygons[0]) >= 4
    assert area.polygons[0][0] == area.polygons[0][-1]
    assert area.codes == ("006109", "006009", "006003")
    assert area.details["geocode_names"] == "SAME"


def test_areas_of_every_language_kept_english_preferred(shared_data: Path) -> None:
    alert = parsed(shared_data / "cap" / "v1dot2_appendix_adot4.xml").alert
    assert alert.details["language"] == "en-US"
    assert alert.event == "Child Abduction"
    assert [a.description for a in alert.areas] == ["Los Angeles County", "condado de Los Ángeles"]


def test_cancel_without_info(shared_data: Path) -> None:
    alert = parsed(shared_data / "cap" / "ipaws-5e6dd9de023f1930ef6548d9.xml").alert
    assert alert.msg_type is MsgType.CANCEL
    assert alert.references == ("AS-NV-e18921c7-1b35-4a81-9705-42d25c265ddd",)
    assert alert.areas == ()


def test_cap_11_from_nws(shared_data: Path) -> None:
    alert = parsed(shared_data / "cap" / "nws-5c2cf27b1f56885d61654dc47fa411d5.xml").alert
    assert alert.kind == "CAP1.1" and alert.event == "Blizzard Warning" and alert.status is Status.ACTUAL


CAP_JA = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>numazu-2024-001</identifier><sender>bousai@city.numazu.example</sender>
  <sent>2024-06-01T10:00:00+09:00</sent><status>{status}</status><msgType>Alert</msgType><scope>Public</scope>
  <info><language>en-US</language><event>Landslide</event><urgency>Immediate</urgency>
    <severity>Severe</severity><certainty>Likely</certainty><headline>Evacuate Heda</headline>
    <area><areaDesc>Heda</areaDesc><polygon>34.99,138.76 34.99,138.84 34.94,138.84 34.99,138.76</polygon></area>
  </info>
  <info><language>ja-JP</language><event>土砂災害</event><urgency>Immediate</urgency>
    <severity>Extreme</severity><certainty>Likely</certainty><headline>戸田地区に避難指示</headline>
    <area><areaDesc>戸田</areaDesc><polygon>34.99,138.76 not-a-point</polygon><circle>34.97,138.80 2</circle>
      <geocode><valueName>district</valueName><value>numazu-heda</value></geocode></area>
  </info>
</alert>"""


def test_japanese_info_preferred_and_bad_shapes_reported() -> None:
    result = parse_cap(CAP_JA.format(status="Actual").encode())
    assert isinstance(result, Parsed)
    alert = result.alert
    assert alert.event == "土砂災害" and alert.priority is Priority.CRITICAL
    assert [a.description for a in alert.areas] == ["Heda", "戸田"]
    assert alert.areas[1].circles == ((34.97, 138.80, 2.0),)
    assert alert.areas[1].codes == ("numazu-heda",)
    assert len(result.problems) == 1 and "'戸田' polygon 0" in result.problems[0]


@pytest.mark.parametrize(
    ("text", "status"), [("Exercise", Status.EXERCISE), ("System", Status.TEST), ("Bogus", Status.TEST)]
)
def test_non_actual_status_is_fenced(text: str, status: Status) -> None:
    result = parse_cap(CAP_JA.format(status=text).encode())
    assert isinstance(result, Parsed) and result.alert.status is status and not result.alert.is_public


@pytest.mark.parametrize(
    "doc",
    [
        b'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&x;</identifier></alert>',
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&b;</identifier></alert>',
        b"<alert",
        b"",
        b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><sender>x</sender></alert>',
    ],
)
def test_unsafe_or_broken_documents_fail_cleanly(doc: bytes) -> None:
    assert isinstance(parse_cap(doc), Failed)


def test_not_cap_and_ack_are_unsupported() -> None:
    assert isinstance(parse_cap(b"<Report/>"), Unsupported)
    ack = CAP_JA.format(status="Actual").replace("<msgType>Alert</msgType>", "<msgType>Ack</msgType>")
    result = parse_cap(ack.encode())
    assert isinstance(result, Unsupported) and "Ack" in result.reason
