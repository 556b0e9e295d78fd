"""The model's helpers."""

from __future__ import annotations

import dataclasses

from dispatcher.model import Message


def test_with_idempotency_key_keeps_every_other_field() -> None:
    # Every field set to a non-default value, so a field the helper forgets shows up.
    values = {
        "text": "本文",
        "language": "en",
        "subject": "件名",
        "html": "<p>本文</p>",
        "link": "https://example.jp/a/1",
        "exercise": True,
        "idempotency_key": "old",
        "extra": {"body": b"{}"},
    }
    assert set(values) == {f.name for f in dataclasses.fields(Message)}, "a new Message field needs a value here"
    message = Message(**values)  # type: ignore[arg-type]
    keyed = message.with_idempotency_key("delivery-42")
    assert keyed == dataclasses.replace(message, idempotency_key="delivery-42")
    assert message.idempotency_key == "old"
