"""``dispatcher x-cost ALERT``: what posting an alert on X would cost, before it is sent.

X bills every post and a post with a link more (``[channels.x] price_per_post`` and
``price_per_post_with_link``). ``ALERT`` is a JMA or CAP file, or the public id of a
stored alert (e.g. one held for approval); the answer shows the post as it would be
sent, with and without the link, and the price of each, as JSON.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from channels.base import ChannelContext
from channels.templates import Templates, local_codes_for
from channels.x import XChannel, XConfig
from dispatcher.model import Alert


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


async def x_cost(settings: Any, alert_ref: str, language: str, connect: Any) -> int:
    data = await asyncio.to_thread(_read, Path(alert_ref))
    alert: Alert | None
    if data is not None:
        from dispatcher.targeting import read_alert

        alert = read_alert(data, url=alert_ref)
    else:
        from dispatcher.store import public
        from dispatcher.store.alerts import row_to_alert

        conn = await connect(settings)
        try:
            row = await public.alert_by_public_id(conn, alert_ref)
        finally:
            await conn.close()
        alert = row_to_alert(row) if row is not None else None
    if alert is None:
        print(f"dispatcher: no alert file or stored alert {alert_ref!r}")
        return 1
    if not alert.public_id:  # a file, not stored yet: a link as long as its page's will be
        alert = replace(alert, public_id="20000101-xxxxxxxx")
    cs = settings.channels.get("x")
    config = cs.options if cs is not None and cs.options is not None else XConfig()
    templates = Templates.load(local_area_codes=local_codes_for(settings.service.area_codes))
    channel = XChannel(config, ChannelContext(templates=templates, public_url=settings.service.public_url))
    report = {"alert": alert.identifier, "event": alert.event, **channel.estimate(alert, language)}
    report["posted"] = alert.is_public and templates.concerns_city(alert)
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0
