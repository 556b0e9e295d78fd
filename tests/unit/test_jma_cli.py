"""``dispatcher parse FILE...``: one JSON object per file, for real telegrams and hostile input alike.

It exits 1 when any file failed or could not be read (issue 17 item 10) and
prints, per alert, ``level`` and ``areas`` as objects (issue 11 item 2).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "file",
    "supported",
    "identifier",
    "series_key",
    "status",
    "msg_type",
    "event",
    "severity",
    "headline",
    "level",
    "areas",
    "references",
}
AREA_KEYS = {"code", "name", "kinds", "level"}
REAL = [
    "jma/live_noto2024/TsunamiAlarm.xml",
    "jma/live_noto2024/WInfoL.xml",
    "jma/live_p2pquake/20210217140808_0_VXSE51_010000.xml",
    "jma/official_samples/32-35_06_06_100915_VXSE53.xml",  # 取消
    "jma/official_samples/01_01_01_091210_VGSK50.xml",  # 季節観測: well-formed, not normalised
]
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Report><Control><Title>&lol9;</Title></Control></Report>
"""


def _run(*files: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", "parse", *files],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_dispatcher_parse_prints_one_object_per_file_and_exits_1_on_failure(shared_data: Path, tmp_path: Path) -> None:
    laughs = tmp_path / "laughs_VXSE53.xml"
    laughs.write_bytes(BILLION_LAUGHS)
    truncated = tmp_path / "truncated_VTSE41.xml"
    whole = (shared_data / REAL[0]).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    missing = tmp_path / "missing.xml"
    files = [str(shared_data / r) for r in REAL] + [str(laughs), str(truncated), str(missing)]

    out = _run(*files)
    # Every file still has its line, but a failed or unreadable one fails the command.
    assert out.returncode == 1, out.stderr.decode()
    rows = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert [r["file"] for r in rows] == files

    good, bad = rows[: len(REAL)], rows[len(REAL) :]
    for row in good:
        assert set(row) >= KEYS, KEYS - set(row)
        assert "error" not in row
        assert isinstance(row["areas"], list) and isinstance(row["references"], list)
        assert all(set(area) == AREA_KEYS for area in row["areas"])
    tsunami, noto, shindo, cancel, seasonal = good
    assert (tsunami["supported"], tsunami["event"], tsunami["severity"]) == (True, "大津波警報", "extreme")
    noto_coast = next(a for a in tsunami["areas"] if a["code"] == "360")
    assert noto_coast == {"code": "360", "name": "石川県能登", "kinds": ["大津波警報"], "level": None}
    assert tsunami["status"] == "actual" and tsunami["msg_type"] == "alert"
    numazu = next(a for a in noto["areas"] if a["code"] == "2220300")
    assert noto["identifier"].startswith("jma-") and numazu["name"] == "沼津市" and numazu["level"] is None
    assert shindo["event"] == "震度速報" and shindo["series_key"].startswith("震度速報|")
    assert cancel["msg_type"] == "cancel" and cancel["references"] == [cancel["series_key"]]
    assert seasonal["supported"] is False and seasonal["identifier"] is None and seasonal["event"]

    for row in bad:
        assert set(row) == {"file", "error"} and row["error"]
    assert "entit" in bad[0]["error"].lower() or "unsafe" in bad[0]["error"].lower()


def test_dispatcher_parse_exits_0_when_every_file_parses(shared_data: Path) -> None:
    out = _run(*(str(shared_data / r) for r in REAL))
    assert out.returncode == 0, out.stderr.decode()
    assert len(out.stdout.decode().splitlines()) == len(REAL)


def test_dispatcher_parse_prints_levels_per_area(shared_data: Path) -> None:
    # The Fukui telegram of 30 Aug 2026: レベル５ for 福井市, レベル４ for 坂井市, レベル３ for 鯖江市.
    out = _run(str(shared_data / "jma/live_2026/18_00_01_260830_VPWW55_fukui_L5.xml"))
    assert out.returncode == 0, out.stderr.decode()
    (row,) = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert row["level"] == 5
    by_name = {a["name"]: a for a in row["areas"]}
    assert by_name["福井市"] == {"code": "1820100", "name": "福井市", "kinds": ["レベル５大雨特別警報"], "level": 5}
    assert by_name["坂井市"]["level"] == 4 and by_name["坂井市"]["kinds"] == ["レベル４大雨危険警報"]
    assert by_name["鯖江市"]["level"] == 3
