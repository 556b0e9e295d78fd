"""Addresses in what operators read: masked as on the pages, redacted in providers' reasons."""

from __future__ import annotations

from channels.base import Delivered, Reject, Retry
from dispatcher.privacy import mask, redact, redact_reason


def test_mask_keeps_enough_to_tell_recipients_apart() -> None:
    assert mask("yamada.hanako@example.jp") == "ya…@example.jp"
    assert mask("100001") == "…0001"
    assert mask("-1001234567890") == "…7890"
    assert mask("42") == "42"


def test_redact_masks_the_recipient_and_any_address_or_chat_id_in_a_reason() -> None:
    smtp = "smtp 550 5.1.1 <Yamada.Hanako@example.jp>: Recipient address rejected: User unknown"
    assert redact(smtp, "yamada.hanako@example.jp") == (
        "smtp 550 5.1.1 <ya…@example.jp>: Recipient address rejected: User unknown"
    )
    other = "smtp 550 5.7.1 <suzuki@example.org> forwarded for <sato.ichiro@example.net> refused"
    assert redact(other, "tanaka@example.jp") == (
        "smtp 550 5.7.1 <su…@example.org> forwarded for <sa…@example.net> refused"
    )
    assert redact("group migrated to a supergroup: new_chat_id=-1001234567890", "200001") == (
        "group migrated to a supergroup: new_chat_id=…7890"
    )
    assert redact("telegram 400: chat 200001 not found", "200001") == "telegram 400: chat …0001 not found"
    # What is not an address stays: codes, hosts, ports, waits.
    kept = "smtp connection: ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 2525)"
    assert redact(kept, "x@example.jp") == kept
    assert redact("telegram flood control: retry after 10072 s", "200001") == (
        "telegram flood control: retry after 10072 s"
    )


def test_redact_reason_rewrites_only_answers_with_a_reason() -> None:
    retry = Retry("smtp 451 <yamada@example.jp> try later", after=3.0)
    assert redact_reason(retry, "yamada@example.jp") == Retry("smtp 451 <ya…@example.jp> try later", after=3.0)
    reject = Reject("new_chat_id=-1001234567890")
    assert redact_reason(reject, "200001") == Reject("new_chat_id=…7890")
    delivered = Delivered("<1.delivery-1@city.numazu.example>")
    assert redact_reason(delivered, "x") is delivered
    clean = Retry("telegram timeout")
    assert redact_reason(clean, "200001") is clean
