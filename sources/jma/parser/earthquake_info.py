"""南海トラフ地震臨時情報 / 関連解説情報 (VYSE50–52), 北海道・三陸沖後発地震注意情報 (VYSE60).

https://xml.kishou.go.jp/tec_material.html (南海トラフ地震に関連する情報).
"""

from __future__ import annotations

from sources.jma.parser.elements import find, text_at
from sources.jma.parser.envelope import Telegram
from sources.jma.parser.reading import Reading
from sources.jma.severity import rate


def read_earthquake_info(telegram: Telegram) -> Reading:
    """南海トラフ地震臨時情報 / 関連解説情報 (VYSE50–52), 北海道・三陸沖後発地震注意情報 (VYSE60)."""
    info = find(telegram.body, "EarthquakeInfo")
    event = telegram.head_title or telegram.control_title
    details = {
        "info_kind": text_at(info, "InfoKind"),
        "info_serial": text_at(info, "InfoSerial/Name"),
    }
    texts = [text_at(info, "Text"), text_at(telegram.body, "NextAdvisory")]
    # No area list: these concern the whole assumed source region; the
    # dispatcher routes them by kind.
    return Reading(event, rate(event), [], details, texts)
