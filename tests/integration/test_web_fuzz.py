"""Generated requests against the real web server: whatever is sent, the answer is never a 5xx.

Hypothesis builds broadcast bodies — JSON and CAP that look valid with hostile values
mixed in (NUL, lone surrogates, bidi overrides, 20,000-character strings, huge and
negative numbers, years 1 and 9999, nesting 100,000 deep, invalid UTF-8) and raw bytes —
signs them so the webhook parses them, and posts them to ``/hooks/broadcast``; and it
builds paths and query strings for every GET route. One daemon (its real aiohttp server,
a real PostgreSQL) answers them all. Hypothesis runs in a worker thread and hands each
batch of requests to the event loop the daemon runs on.

Passing means: not one of at least :data:`BODIES` bodies and :data:`GETS` GET requests
was answered with a 5xx, every 4xx said why, and nothing was logged as an error (no
traceback). About 30 s on the test VM.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape

import aiohttp
import pytest
import yarl
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dispatcher.app import Service
from dispatcher.settings import load
from sources.broadcast.examples import signed_headers
from tests.staffing import create_staff, log_in

SECRET = "web-fuzz-test-secret-0123456789abcdef01"
# Per example: about 36 bodies (see posts()) and BATCH_GETS GETs.
BATCH_GETS = 12
EXAMPLES = 270
BODIES = 10_000
GETS = 3_000
CONFIG = """
[service]
state_dir = "{state}"
[web]
port = 0
[jma]
enabled = false
[broadcast]
enabled = true
secret_env = "FUZZ_SECRET"
hold_emergency = false
hold_ordinary = false
"""

# -- what goes in ---------------------------------------------------------------------------------
#
# Each example draws one valid broadcast in each form and, for every field, one hostile
# value, and posts the valid one plus one copy per field with that field replaced: each
# limit is probed with everything else valid, where a missing check would let it reach
# the database. Variants carry their own identifier, so valid-after-all ones are
# accepted (202) rather than refused as replays. Identifiers come from a counter, not
# from Hypothesis, which would draw the same few UUIDs again and again.

NASTY = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "\u202e",
    "\u200b",
    "\n",
    "\r\n",
    "\x85",
    "\x1b[31m",
    "²",
    "١٢٣",
    "-1",
    "0",
    "99999999999999999999999",
    "9" * 5000,
    "NaN",
    "<script>alert(1)</script>",
    "'; DROP TABLE alerts; --",
    "%00",
    "../../etc/passwd",
    "all",
    "heda",
    "沼津市",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "2025-06-01T07:30:00",
]
texts = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=30),
    st.text(st.characters(exclude_categories=()), max_size=12),  # surrogates too
    st.builds(lambda ch, n: ch * n, st.sampled_from(["x", "沼", "\x00", "é", " "]), st.integers(150, 25_000)),
)
numbers = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), st.just(10**4000))
leaves = st.one_of(texts, numbers, st.booleans(), st.none())
values = st.one_of(
    leaves,
    st.lists(leaves, max_size=3),
    st.dictionaries(st.sampled_from(["a", "id", ""]), leaves, max_size=2),
    st.integers(1, 100_000).map(lambda n: json.loads("[" * min(n, 900) + "]" * min(n, 900))),
)


def _iso(moment: datetime, offset_hours: int) -> str:
    return moment.astimezone(timezone(timedelta(hours=offset_hours))).isoformat()


recent_times = st.builds(
    lambda seconds, offset: _iso(datetime.now(UTC) - timedelta(seconds=seconds), offset),
    st.integers(-3600, 7 * 86400),
    st.integers(-14, 14),
)
any_times = st.one_of(
    st.builds(
        lambda seconds, offset: _iso(datetime.now(UTC) - timedelta(seconds=seconds), offset),
        st.integers(-30 * 86400, 30 * 365 * 86400),
        st.integers(-14, 14),
    ),
    st.builds(
        lambda moment, offset: moment.replace(tzinfo=timezone(timedelta(hours=offset))).isoformat(),
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
        st.integers(-14, 14),
    ),
    st.sampled_from(NASTY),
)
_UNIQUE = itertools.count(1)
GROUPS = ["heda", "central", "all", "atlantis", "numazu-ooka", "沼津市", "2220300"]
hostile = {
    "aired_at": st.one_of(any_times, values),
    "groups": st.one_of(st.lists(texts, max_size=120), values),
    "references": st.one_of(st.lists(texts, max_size=110), values),
}


def _dump(draw: st.DrawFn, doc: dict[str, Any]) -> bytes:
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()), allow_nan=True)
    # ensure_ascii=False keeps lone surrogates as they are: invalid UTF-8 on the wire.
    return text.encode("utf-8", "surrogatepass")


@st.composite
def json_bodies(draw: st.DrawFn) -> list[bytes]:
    """A valid JSON broadcast, and one copy per field with a hostile value in it."""
    base: dict[str, Any] = {
        "id": f"FUZZ-{next(_UNIQUE)}",
        "aired_at": draw(recent_times),
        "priority": draw(st.sampled_from(["emergency", "ordinary"])),
        "groups": draw(st.lists(st.sampled_from(GROUPS), min_size=1, max_size=3)),
        "text": draw(st.sampled_from(["こちらは、防災ぬまづです。", "避難してください。\n直ちに。"])),
        "sender": draw(st.sampled_from(["console.fuzz", "bousai-musen.city.numazu.shizuoka.jp"])),
        "chime": "緊急チャイム",
        "category": draw(st.sampled_from(["evacuation", "chime_test", "weather", "missing_person"])),
        "exercise": draw(st.booleans()),
        "msg_type": "alert",
    }
    bodies = [_dump(draw, base)]
    for key in [*base, "references", draw(texts)]:
        variant = {**base, "id": f"{base['id']}-{len(bodies)}"}
        variant[key] = draw(hostile.get(key, values))
        if key == "references" or (key == "msg_type" and draw(st.booleans())):
            variant["msg_type"] = "update"
            variant.setdefault("references", [base["id"]])
        bodies.append(_dump(draw, variant))
    missing = dict(base)
    del missing[draw(st.sampled_from(sorted(base)))]
    bodies.append(_dump(draw, missing))
    # A fraction, not a length: the identifiers (from the counter) change lengths between runs.
    cut = bodies[0][: len(bodies[0]) * draw(st.integers(0, 1000)) // 1000]
    return [*bodies, cut]


CAP = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="{namespace}">
  <identifier>{identifier}</identifier>
  <sender>{sender}</sender>
  <sent>{sent}</sent>
  <status>{status}</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>{references}
  <info>
    <language>{language}</language>
    <event>{event}</event>
    <urgency>{urgency}</urgency>
    <severity>{severity}</severity>
    <certainty>Observed</certainty>
    <headline>{headline}</headline>
    <description>{description}</description>
    <expires>{expires}</expires>
    <parameter><valueName>priority</valueName><value>{priority}</value></parameter>
    <parameter><valueName>aired_at</valueName><value>{aired_at}</value></parameter>
    <parameter><valueName>category</valueName><value>{category}</value></parameter>
    <area>
      <areaDesc>{area}</areaDesc>
      <geocode><valueName>{value_name}</valueName><value>{group}</value></geocode>
      <polygon>{polygon}</polygon>
      <circle>{circle}</circle>
    </area>
  </info>
</alert>"""


@st.composite
def cap_bodies(draw: st.DrawFn) -> list[bytes]:
    """A valid CAP broadcast, and one copy per element with a hostile value (mostly escaped) in it."""
    sent = draw(recent_times)
    base = {
        "namespace": "urn:oasis:names:tc:emergency:cap:1.2",
        "identifier": f"FUZZ-CAP-{next(_UNIQUE)}",
        "sender": "bousai-musen.city.numazu.shizuoka.jp",
        "sent": sent,
        "status": draw(st.sampled_from(["Actual", "Exercise", "Test"])),
        "msg_type": "Alert",
        "references": "",
        "language": "ja-JP",
        "event": "防災行政無線",
        "urgency": "Immediate",
        "severity": "Severe",
        "headline": "緊急放送",
        "description": "こちらは、防災ぬまづです。",
        "expires": _iso(datetime.now(UTC) + timedelta(hours=6), 9),
        "priority": draw(st.sampled_from(["emergency", "ordinary"])),
        "aired_at": sent,
        "category": "evacuation",
        "area": "戸田",
        "value_name": "speaker_group",
        "group": draw(st.sampled_from(GROUPS)),
        "polygon": "35.0,138.8 35.1,138.9 35.0,138.9 35.0,138.8",
        "circle": "35.1,138.86 5",
    }
    bodies = [CAP.format(**base).encode()]
    for key in base:
        variant = {**base, "identifier": f"{base['identifier']}-{len(bodies)}"}
        value = str(draw(any_times if key in ("sent", "expires", "aired_at") else st.one_of(texts, numbers)))
        if key == "references":
            variant["msg_type"] = "Update"
            value = f"<references>{escape(base['sender'])},{escape(value)},{sent}</references>"
        elif key == "namespace":
            value = draw(st.sampled_from(["urn:oasis:names:tc:emergency:cap:1.1", "http://www.incident.com/cap/1.0",
                                          "urn:x", ""]))  # fmt: skip
        else:
            # Mostly escaped (well-formed XML carrying a hostile value), sometimes raw.
            value = escape(value) if draw(st.integers(0, 7)) else value
        variant[key] = value
        bodies.append(CAP.format(**variant).encode("utf-8", "surrogatepass"))
    return bodies


raw_bodies = st.one_of(
    st.binary(max_size=2000),
    st.integers(1, 200_000).map(lambda n: b"[" * n),
    st.integers(1, 50_000).map(lambda n: b'{"id": "x", "groups": ' + b"[" * n + b"]" * n + b"}"),
    st.integers(1, 50_000).map(lambda n: b"<alert>" + b"<a>" * n + b"</a>" * n + b"</alert>"),
    st.just(b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><alert>&e;</alert>'),
)
JSON_TYPE = "application/json"
CAP_TYPES = ["application/cap+xml", "application/xml", "text/xml"]


@dataclasses.dataclass(frozen=True)
class Post:
    body: bytes
    headers: dict[str, str]


def _signed(draw: st.DrawFn, body: bytes, content_type: str) -> Post:
    if draw(st.integers(0, 39)) == 0:
        content_type = draw(st.sampled_from(["text/plain", "application/json; charset=latin-1", "*/*"]))
    headers = signed_headers(SECRET, body, content_type)
    spoil = draw(st.integers(0, 39))
    if spoil == 0:
        headers["X-Timestamp"] = draw(st.sampled_from(["", "abc", "-1", "99999999999999999999", "1e9", "²"]))
    elif spoil == 1:
        headers["X-Signature-256"] = draw(st.sampled_from(["", "sha256=", "sha256=00", "md5=x"]))
    return Post(body, headers)


@st.composite
def posts(draw: st.DrawFn) -> list[Post]:
    """One example's bodies: the JSON family, the CAP family and a raw one, signed."""
    out = [_signed(draw, b, JSON_TYPE) for b in draw(json_bodies())]
    out += [_signed(draw, b, draw(st.sampled_from(CAP_TYPES))) for b in draw(cap_bodies())]
    out.append(_signed(draw, draw(raw_bodies), draw(st.sampled_from([JSON_TYPE, *CAP_TYPES]))))
    return out


ROUTES = [
    "/",
    "/alerts/{id}",
    "/alerts/{id}/deliveries",
    "/deliveries/{id}",
    "/api/alerts",
    "/api/alerts/{id}/deliveries",
    "/api/deliveries/{id}",
    "/healthz",
    "/style.css",
    "/{id}",
    "/api/{id}",
]
ids = st.one_of(st.integers(-5, 10).map(str), st.sampled_from(NASTY), st.text(max_size=20), st.uuids().map(str))
query_values = st.one_of(
    st.sampled_from(["delivered", "failed", "pending", "telegram", "email", "0", "1", "1000", "1001", "²"]),
    ids,
    numbers.map(str),
)


@st.composite
def gets(draw: st.DrawFn) -> str:
    """A GET of one of the routes, its id and query string hostile or not (under 8 KB: aiohttp's line limit)."""
    path = draw(st.sampled_from(ROUTES)).replace(
        "{id}", quote(draw(ids).encode("utf-8", "surrogatepass"), safe="")[:3000] or "x"
    )
    params = draw(
        st.lists(st.tuples(st.sampled_from(["state", "channel", "after", "limit", "x", ""]), query_values),
                 max_size=4)
    )  # fmt: skip
    if not params:
        return path
    return path + "?" + urlencode([(k, v.encode("utf-8", "surrogatepass")) for k, v in params])[:4000]


# -- the daemon that answers ------------------------------------------------------------------------


@dataclasses.dataclass
class Tally:
    bodies: int = 0
    gets: int = 0
    by_status: dict[int, int] = dataclasses.field(default_factory=dict)
    failures: list[str] = dataclasses.field(default_factory=list)

    def record(self, what: str, status: int, text: str) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if status >= 500 or (status >= 400 and not text.strip()):
            self.failures.append(f"{what} -> {status} {text[:200]!r}")


@pytest.fixture
async def service(database: str, tmp_path: Path) -> AsyncIterator[Service]:
    cfg = tmp_path / "dispatcher.toml"
    cfg.write_text(CONFIG.format(state=tmp_path))
    daemon = Service(load(cfg, env={"FUZZ_SECRET": SECRET}), dsn=database)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


async def test_no_generated_body_path_or_query_string_gets_a_5xx(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    assert service.web_url is not None
    base = service.web_url
    loop = asyncio.get_running_loop()
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=64)
    # Logged in, so that the operator pages' own checks answer (not the login's redirect).
    await create_staff(service.dsn, "fuzzer", "viewer")
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        assert (await log_in(http, base, "fuzzer")).status == 303

        async def post(p: Post) -> None:
            async with http.post(base + "/hooks/broadcast", data=p.body, headers=p.headers) as resp:
                tally.record(f"POST {p.body[:120]!r} {p.headers.get('Content-Type')}", resp.status, await resp.text())
            tally.bodies += 1

        async def get(path: str) -> None:
            async with http.get(yarl.URL(base + path, encoded=True)) as resp:
                tally.record(f"GET {path[:200]}", resp.status, await resp.text())
            tally.gets += 1

        async def batch(bodies: list[Post], paths: list[str]) -> None:
            await asyncio.gather(*(post(p) for p in bodies), *(get(p) for p in paths))

        def submit(bodies: list[Post], paths: list[str]) -> None:
            asyncio.run_coroutine_threadsafe(batch(bodies, paths), loop).result(timeout=120)
            assert not tally.failures, tally.failures[:5]

        started = time.monotonic()
        await asyncio.to_thread(_fuzz(submit))
        elapsed = time.monotonic() - started
    statuses = sorted(tally.by_status.items())
    print(f"\nfuzz: {tally.bodies} bodies, {tally.gets} GETs in {elapsed:.1f} s; statuses {statuses}")
    assert not tally.failures, tally.failures[:5]
    assert tally.bodies >= BODIES and tally.gets >= GETS
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [(r.name, r.getMessage()) for r in errors[:5]]
    accepted = tally.by_status.get(202, 0)
    assert accepted >= 100, "valid-looking bodies get through to the database too, not only refusals"


def _fuzz(submit: Callable[[list[Post], list[str]], None]) -> Callable[[], None]:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,  # nothing written to .hypothesis/ in the worktree
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        bodies=posts(),
        paths=st.lists(gets(), min_size=BATCH_GETS, max_size=BATCH_GETS),
    )
    def run(bodies: list[Post], paths: list[str]) -> None:
        submit(bodies, paths)

    return run  # type: ignore[no-any-return]
