"""The Mastodon, X and Bluesky channels against their stand-ins: wire format, lengths, threads, cancels, limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from channels.base import ChannelContext, Delivered, Retry
from channels.bluesky import BlueskyChannel, BlueskyConfig, fits
from channels.mastodon import MastodonChannel, MastodonConfig
from channels.posts import MemoryPostLog
from channels.templates import Templates
from channels.x import XChannel, XConfig, weighted_length
from dispatcher.model import MsgType, Recipient
from dispatcher.standins.bluesky import BlueskyStandIn
from dispatcher.standins.lengths import grapheme_count
from dispatcher.standins.mastodon import MastodonStandIn, countable_length
from dispatcher.standins.x_api import OAuth1Credentials, XStandIn
from dispatcher.standins.x_api import weighted_length as x_weighted
from tests.samples import tsunami_warning

TOKEN = "mastodon-token-0123"
CREDS = OAuth1Credentials("ck", "cs", "at", "ats")
ME = Recipient(1, "*")


def context(log: MemoryPostLog) -> ChannelContext:
    return ChannelContext(templates=Templates.load(), public_url="https://bousai.city.numazu.example", posts=log)


def long_alert():  # type: ignore[no-untyped-def]
    return tsunami_warning(description="静岡県では、ただちに高台へ避難してください。" * 40)


def chain(log: MemoryPostLog):  # type: ignore[no-untyped-def]
    """An alert, its update and its cancellation, linked as the pipeline links them."""
    first = long_alert()
    update = replace(
        first, identifier="u1", public_id="20261129-update01", msg_type=MsgType.UPDATE, references=(first.identifier,)
    )
    cancel = replace(
        first,
        identifier="c1",
        public_id="20261129-cancel01",
        msg_type=MsgType.CANCEL,
        references=("u1",),
        event="津波警報解除",
        headline="津波警報を解除しました。",
    )
    log.replaces[update.public_id] = first.public_id
    log.replaces[cancel.public_id] = update.public_id
    return first, update, cancel


@pytest.fixture
async def mastodon() -> AsyncIterator[MastodonStandIn]:
    standin = MastodonStandIn(TOKEN, max_characters=300)
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
async def x() -> AsyncIterator[XStandIn]:
    standin = XStandIn(CREDS)
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
async def bluesky() -> AsyncIterator[BlueskyStandIn]:
    standin = BlueskyStandIn("numazu.bsky.social", "app-pass-1234")
    await standin.start()
    yield standin
    await standin.stop()


async def test_mastodon_threads_updates_and_edits_on_cancel(mastodon: MastodonStandIn) -> None:
    log = MemoryPostLog()
    ch = MastodonChannel(MastodonConfig(base_url=mastodon.base_url, token=TOKEN), context(log))
    await ch.open()
    assert ch.limit == 300  # read from /api/v2/instance
    first, update, cancel = chain(log)
    try:
        m1 = ch.render(first, "ja").with_idempotency_key("delivery-1")
        assert countable_length(m1.text) <= 300
        r1 = await ch.send_one(m1, ME)
        assert isinstance(r1, Delivered)
        again = await ch.send_one(m1, ME)  # a retry after a lost answer: no second status
        assert isinstance(again, Delivered) and again.remote_id == r1.remote_id
        r2 = await ch.send_one(ch.render(update, "ja").with_idempotency_key("delivery-2"), ME)
        assert isinstance(r2, Delivered)
        assert mastodon.toots[str(r2.remote_id)].in_reply_to_id == r1.remote_id
        r3 = await ch.send_one(ch.render(cancel, "ja").with_idempotency_key("delivery-3"), ME)
        assert isinstance(r3, Delivered)
        edited = [t for t in mastodon.toots.values() if t.edited_at is not None]
        assert {t.id for t in edited} == {r1.remote_id, r2.remote_id}
        assert all(t.text.startswith("【取消】") for t in edited)
        assert mastodon.toots[str(r3.remote_id)].in_reply_to_id == r2.remote_id
        assert not mastodon.refusals
    finally:
        await ch.close()


async def test_mastodon_honours_rate_limit_headers(mastodon: MastodonStandIn) -> None:
    ch = MastodonChannel(MastodonConfig(base_url=mastodon.base_url, token=TOKEN), context(MemoryPostLog()))
    try:
        mastodon.throttle()
        result = await ch.send_one(ch.render(tsunami_warning(), "ja"), ME)
        assert isinstance(result, Retry) and result.rate_limited and result.after and result.after > 0
        # The 429's X-RateLimit-Reset holds the next send without a request, until then.
        before = mastodon.requests
        held = await ch.send_one(ch.render(tsunami_warning(), "ja"), ME)
        assert isinstance(held, Retry) and held.rate_limited and 0 < (held.after or 0) <= 300
        assert mastodon.requests == before
    finally:
        await ch.close()


async def test_x_weighted_length_thread_cost_and_delete_on_cancel(x: XStandIn) -> None:
    log = MemoryPostLog()
    cfg = XConfig(
        base_url=x.base_url, consumer_key="ck", consumer_secret="cs", access_token="at", access_token_secret="ats"
    )
    ch = XChannel(cfg, context(log))
    first, update, cancel = chain(log)
    try:
        assert (await ch.healthcheck()).ok
        m1 = ch.render(first, "ja")
        assert weighted_length(m1.text) <= 280 and x_weighted(m1.text) <= 280
        estimate = ch.estimate(first)
        assert estimate["cost_with_link_usd"] == "0.200" and estimate["cost_without_link_usd"] == "0.015"
        r1 = await ch.send_one(m1, ME)
        assert isinstance(r1, Delivered), r1
        r2 = await ch.send_one(ch.render(update, "ja"), ME)
        assert isinstance(r2, Delivered)
        r3 = await ch.send_one(ch.render(cancel, "ja"), ME)
        assert isinstance(r3, Delivered)
        assert x.posts[str(r1.remote_id)].deleted and x.posts[str(r2.remote_id)].deleted
        assert not x.posts[str(r3.remote_id)].deleted
        assert not x.refusals, x.refusals
        cheap = XChannel(replace(cfg, include_link=False), context(MemoryPostLog()))
        m = cheap.render(replace(first, public_id="20261129-nolink01"), "ja")
        assert "https://" not in m.text and cheap.cost(m) == ch.cost(m) / ch.cost(m1) * ch.cost(m1)
        assert (await cheap.send_one(m, ME)).__class__ is Delivered
        await cheap.close()
    finally:
        await ch.close()


async def test_x_thread_reply_and_rate_limit(x: XStandIn) -> None:
    log = MemoryPostLog()
    cfg = XConfig(
        base_url=x.base_url, consumer_key="ck", consumer_secret="cs", access_token="at", access_token_secret="ats"
    )
    ch = XChannel(cfg, context(log))
    first, update, _cancel = chain(log)
    try:
        r1 = await ch.send_one(ch.render(first, "en"), ME)
        r2 = await ch.send_one(ch.render(update, "en"), ME)
        assert isinstance(r1, Delivered) and isinstance(r2, Delivered)
        assert x.posts[str(r2.remote_id)].in_reply_to_tweet_id == r1.remote_id
        x.throttle()
        limited = await ch.send_one(ch.render(replace(first, public_id="20261129-other001"), "en"), ME)
        assert isinstance(limited, Retry) and limited.rate_limited
    finally:
        await ch.close()


async def test_bluesky_facets_thread_session_reuse_and_delete_on_cancel(bluesky: BlueskyStandIn) -> None:
    log = MemoryPostLog()
    ch = BlueskyChannel(
        BlueskyConfig(base_url=bluesky.base_url, handle="numazu.bsky.social", password="app-pass-1234"), context(log)
    )
    first, update, cancel = chain(log)
    try:
        m1 = ch.render(first, "ja")
        assert fits(m1.text) and grapheme_count(m1.text) <= 300
        r1 = await ch.send_one(m1, ME)
        assert isinstance(r1, Delivered), r1
        bluesky.expire_access_tokens()  # refreshed, not a new session
        r2 = await ch.send_one(ch.render(update, "ja"), ME)
        assert isinstance(r2, Delivered), r2
        reply = bluesky.records[str(r2.remote_id)].value["reply"]
        assert reply["parent"]["uri"] == r1.remote_id and reply["root"]["uri"] == r1.remote_id
        r3 = await ch.send_one(ch.render(cancel, "ja"), ME)
        assert isinstance(r3, Delivered)
        assert bluesky.records[str(r1.remote_id)].deleted and bluesky.records[str(r2.remote_id)].deleted
        # One createSession and one refreshSession (the expired access token), nothing more.
        assert bluesky.sessions_created == 2 and len(ch.sessions) == 1
        facets = bluesky.records[str(r3.remote_id)].value["facets"]
        assert facets and facets[0]["index"]["byteStart"] > 0
        assert [r.reason for r in bluesky.refusals] == ["Token has expired"]
    finally:
        await ch.close()


async def test_an_alert_elsewhere_is_not_posted_on_the_citys_accounts(mastodon: MastodonStandIn) -> None:
    from channels.posts import SKIPPED
    from dispatcher.model import Area
    from tests.samples import make_alert

    ch = MastodonChannel(MastodonConfig(base_url=mastodon.base_url, token=TOKEN), context(MemoryPostLog()))
    try:
        elsewhere = make_alert(
            "matsue-1", source="jma", public_id="20261129-matsue01", areas=(Area("松江市", ("3220100",)),)
        )
        result = await ch.send_one(ch.render(elsewhere, "ja"), ME)
        assert isinstance(result, Delivered) and result.detail == SKIPPED and not mastodon.toots
    finally:
        await ch.close()
