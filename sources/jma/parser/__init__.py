"""Parse JMA 防災情報XML telegrams into ``dispatcher.model.Alert``.

Format reference: https://xml.kishou.go.jp/ (技術資料: 解説資料, 個別コード表).
Every telegram is ``Report`` = ``Control`` (Title, Status, EditorialOffice) +
``Head`` (Title, ReportDateTime, EventID, InfoType, Serial, Headline) + ``Body``
(meteorology1 / seismology1 / volcanology1). Lookups are by local name so that
a namespace version bump does not break them.

The package: ``elements`` (shared XML helpers), ``envelope`` (Control and Head,
required elements, identifier, series key, limits), ``titles`` (the one table from
Control/Title to data-type code and family), one module per family
(``weather_warnings``, ``seismic``, ``eew``, ``tsunami``, ``warning_items``, ``flood``,
``volcano``, ``earthquake_info``, ``special_warning_notice``, ``weather_bulletin``,
``typhoon``), and ``reading`` (what a family read → the Alert). A new family is a
module with a ``read_<family>(telegram) -> Reading`` and its titles in ``titles``.

Contracts with the dispatcher:

* ``parse_telegram`` never raises for bad input: it returns a
  :mod:`sources.outcome`: ``Parsed(alert)``, ``Unsupported(...)`` for well-formed
  telegrams of a family we do not normalise (stored and reported, not delivered),
  or ``Failed(error)``.
* ``identifier``: JMA has no message id, so it is ``"jma-"`` + the first 32 hex
  digits of SHA-256 over Control/Title, Control/EditorialOffice,
  Control/Status, Head/Title, Head/ReportDateTime, Head/InfoType, Head/Serial,
  Head/EventID, Head/Headline/Text and a SHA-256 of the Body's bytes. The same
  telegram fetched twice (the same bytes) gets the same identifier; two
  telegrams that differ in what they say never share one, even when their Head
  does (two 噴火速報 of one minute with an empty Serial): a collision would drop
  the second as "already stored". A copy re-encoded on the way (other line
  endings) gets another identifier; folding one issuance into one message is
  the pipeline's job, not the identifier's.
* Completeness: a Report must carry every Control and Head element the jmx
  schemas require (Control: Title, DateTime, Status, EditorialOffice,
  PublishingOffice; Head: Title, ReportDateTime, TargetDateTime, EventID,
  InfoType, Serial, InfoKind, InfoKindVersion, Headline), with a non-empty
  Control/Title, Status, EditorialOffice, Head/Title and InfoType and valid
  Control/DateTime and Head/ReportDateTime; EventID, Serial and TargetDateTime
  may be empty (they are in 107, 178 and 0 of the 424 real telegrams of
  ``shared/data/jma``, and every one of those has all the elements). A
  telegram without them is ``Failed`` (stored and reported, never sent), with
  the missing elements named.
* Text limits (characters; the largest real values in ``shared/data/jma`` are
  36 for a title, 33 for an area name, 3,015 for a Body text):
  identity fields (Control/Title, Status, EditorialOffice, Head/Title,
  InfoType, EventID, Serial) over ``MAX_IDENTITY_CHARS`` (200) make the
  telegram ``Failed``; free text is cut, ending in "…": the headline at
  ``MAX_HEADLINE_CHARS`` (4,000), description and instruction at
  ``MAX_TEXT_CHARS`` (20,000), the event at ``MAX_IDENTITY_CHARS``, an area's
  name at ``MAX_AREA_NAME_CHARS`` (200) and each of its details at
  ``MAX_DETAIL_CHARS`` (4,000).
* ``details["level"]`` (int) is the highest 警戒レベル of the alert's areas, and
  each such Area has ``details["level"]`` ("1"–"5"): from R06 Kind names, the
  levels VPWW53/54 give only in Body/Notice (〈レベル４大雨危険警報〉姫路市　…),
  VXKO flood kinds, 土砂災害警戒情報 = 4, 特別警報 = 5 (rules in
  :mod:`sources.jma.severity`); priority follows it.
* ``details["push"] is False`` marks telegrams stored and shown on the site but
  not pushed to residents by default (台風解析・予報情報 VPTW60–65); the pipeline
  honours it.
* ``series_key``: ``Control/Title|EditorialOffice|Status`` plus ``|EventID``
  when there is one (DESIGN.md §5). The newest ``sent`` of a series wins.
* ``references``: for 訂正 (UPDATE) and 取消 (CANCEL) the telegram does not
  name the identifier it replaces, so ``references == (series_key,)`` and the
  dispatcher resolves it to the latest alert of that series.
* ``areas``: each Area carries its JMA code(s) and ``details["code_type"]``
  (the telegram's codeType: 市町村等, 津波予報区, 地震情報／細分区域 …); 3-digit
  codes are ambiguous between code types, so resolve them with
  ``AreaCodes.resolve_areas``. Warnings list only municipalities where a
  warning is in force or was just lifted.
"""

from __future__ import annotations

from typing import Any

from dispatcher.model import MsgType, Status
from sources.jma.codes import AreaCodes
from sources.jma.parser.elements import child_elements, child_texts, jma_datetime, tag_name, text_at
from sources.jma.parser.envelope import (
    MAX_AREA_NAME_CHARS,
    MAX_DETAIL_CHARS,
    MAX_HEADLINE_CHARS,
    MAX_IDENTITY_CHARS,
    MAX_TEXT_CHARS,
    MSG_TYPE,
    STATUS,
    Telegram,
    incomplete,
    kind_from_name,
    make_identifier,
    series_key,
)
from sources.jma.parser.reading import to_alert
from sources.jma.parser.titles import family_of
from sources.jma.severity import kind_level, rate, with_level
from sources.outcome import Failed, Parsed, ParseOutcome, Unsupported
from sources.safexml import DEFAULT_MAX_BYTES, MalformedXmlError, UnsafeXmlError, parse_xml

__all__ = [
    "MAX_AREA_NAME_CHARS",
    "MAX_DETAIL_CHARS",
    "MAX_HEADLINE_CHARS",
    "MAX_IDENTITY_CHARS",
    "MAX_TEXT_CHARS",
    "kind_from_name",
    "parse_telegram",
]


def parse_telegram(
    data: bytes,
    *,
    url: str | None = None,
    codes: AreaCodes | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ParseOutcome:
    """Parse one telegram. Never raises for bad input (see the package docstring)."""
    try:
        root = parse_xml(data, max_bytes=max_bytes)
    except (UnsafeXmlError, MalformedXmlError) as exc:
        return Failed(f"{type(exc).__name__}: {exc}")
    try:
        return _parse_root(root, bytes(data), url, codes)
    except Exception as exc:  # a bug or an unforeseen shape must not stop the poller
        return Failed(f"cannot interpret telegram: {type(exc).__name__}: {exc}")


def _parse_root(root: Any, data: bytes, url: str | None, codes: AreaCodes | None) -> ParseOutcome:
    """Read the envelope, look the family up by Control/Title, and let it read the Body."""
    if tag_name(root) != "Report":
        title = text_at(root, "title")
        return Unsupported(
            kind=tag_name(root) or "?",
            title=title,
            reason=f"not a JMA Report telegram (root element <{tag_name(root)}>)",
        )
    parts = child_elements(root)
    control = parts.get("Control")
    head = parts.get("Head")
    if control is None or head is None:
        return Failed("Report lacks Control or Head")
    cf = child_texts(control)
    hf = child_texts(head)
    problem = incomplete(cf, hf)
    if problem:
        return Failed(f"malformed telegram {cf.get('Title', '')[:MAX_IDENTITY_CHARS]!r}: {problem}")
    control_title = cf["Title"]
    office = cf["EditorialOffice"]
    status_text = cf["Status"]
    # An unknown status is fenced like a test: never let it reach the public.
    status = STATUS.get(status_text, Status.TEST)
    info_type = hf["InfoType"]
    msg_type = MSG_TYPE.get(info_type, MsgType.ALERT)
    event_id = hf["EventID"]
    serial = hf["Serial"]
    head_title = hf["Title"]
    report_dt = hf["ReportDateTime"]
    sent = jma_datetime(report_dt)
    assert sent is not None  # incomplete checked it
    family = family_of(control_title)
    kind = kind_from_name(url) or (family.kind if family is not None else "")
    series = series_key(control_title, office, status_text, event_id)
    if family is None or family.read is None:
        rating = with_level(rate(head_title or control_title), kind_level(head_title or control_title))
        return Unsupported(
            kind=kind,
            title=control_title,
            reason="telegram family not normalised",
            series_key=series,
            head_title=head_title,
            sent=sent,
            status=status,
            msg_type=msg_type,
            rating=rating,
        )
    headline = text_at(head, "Headline/Text")
    # After the family check: an Unsupported telegram has no identifier to mint.
    identifier = make_identifier(
        data, (control_title, office, status_text, head_title, report_dt, info_type, serial, event_id, headline)
    )
    telegram = Telegram(
        root=root,
        head=head,
        body=parts.get("Body"),
        control_title=control_title,
        head_title=head_title,
        office=office,
        status=status,
        msg_type=msg_type,
        info_type=info_type,
        event_id=event_id,
        serial=serial,
        sent=sent,
        kind=kind,
        series_key=series,
        identifier=identifier,
        headline=headline,
        valid=jma_datetime(hf.get("ValidDateTime", "")),
        codes=codes,
        url=url,
    )
    return Parsed(to_alert(telegram, family.read(telegram)))
