"""``dispatcher parse FILE...``: one JSON object per file, for real telegrams and hostile input alike."""

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
    "areas",
    "references",
}
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


def test_dispatcher_parse_prints_one_object_per_file_and_exits_0(shared_data: Path, tmp_path: Path) -> None:
    laughs = tmp_path / "laughs_VXSE53.xml"
    laughs.write_bytes(BILLION_LAUGHS)
    truncated = tmp_path / "truncated_VTSE41.xml"
    whole = (shared_data / REAL[0]).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    missing = tmp_path / "missing.xml"
    files = [str(shared_data / r) for r in REAL] + [str(laughs), str(truncated), str(missing)]

    out = subprocess.run(
        [sys.executable, "-m", "dispatcher", "parse", *files],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()
    rows = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert [r["file"] for r in rows] == files

    good, bad = rows[: len(REAL)], rows[len(REAL) :]
    for row in good:
        assert set(row) >= KEYS, KEYS - set(row)
        assert "error" not in row
        assert isinstance(row["areas"], list) and isinstance(row["references"], list)
    tsunami, noto, shindo, cancel, seasonal = good
    assert (tsunami["supported"], tsunami["event"], tsunami["severity"]) == (True, "大津波警報", "extreme")
    assert "360" in tsunami["areas"] and tsunami["status"] == "actual" and tsunami["msg_type"] == "alert"
    assert noto["identifier"].startswith("jma-") and "2220300" in noto["areas"]
    assert shindo["event"] == "震度速報" and shindo["series_key"].startswith("震度速報|")
    assert cancel["msg_type"] == "cancel" and cancel["references"] == [cancel["series_key"]]
    assert seasonal["supported"] is False and seasonal["identifier"] is None and seasonal["event"]

    for row in bad:
        assert set(row) == {"file", "error"} and row["error"]
    assert "entit" in bad[0]["error"].lower() or "unsafe" in bad[0]["error"].lower()
