"""Retry decisions: what becomes of a claimed delivery once its provider answered, or was not asked.

:func:`decide` is the one place that turns an answer into the delivery's next state.
It is pure (the claim, the clock and the :class:`RetryPolicy` come in, a
:class:`Decision` comes out), so every rule is tested without I/O, as Synapse's
``synapse/util/retryutils.py`` (per-destination backoff) and procrastinate's
``procrastinate/retry.py`` (a strategy returns when to try again, or not to) are:

* ``Delivered``: done (``delivered``); an attempt spent.
* ``Reject``: failed, for good; an attempt spent; the subscription is deactivated
  when the provider says the recipient is gone.
* ``Retry`` that is a rate limit: not the delivery's failure, so no attempt spent,
  and a pause of exactly the time the provider asked, of the whole channel or of one
  recipient (the gate holds it in memory, the recorder writes it down); the
  delivery is due again when the pause ends.
* Any other ``Retry``: tried again after the provider's ``Retry-After`` or a capped,
  jittered backoff; an attempt spent.
* :class:`Held` (the gate kept the delivery back unsent: a pause, a spent window
  budget, a recipient's pacing): back to the queue, no attempt spent.

Retries are bounded by time, not count: a delivery is worth trying until its alert
expires or, for an alert without expiry, until ``max_age`` after the service
received it; a retry whose next try would come later ends the delivery now
(``expired``, or ``failed`` with the reason). :func:`unsendable` says which claimed
deliveries need no send at all.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from channels.base import Delivered, Reject, SendResult
from dispatcher.model import DeliveryState
from dispatcher.store.outbox import Claimed

# Longest a delivery given back unsent, or rate limited channel-wide, is put off: a
# channel's pause is held by channel_state (read before any claim), not by the
# deliveries' not_before, so that a resume finds them due.
MAX_GIVE_BACK = 60.0
# A rate limit without a Retry-After waits this long.
DEFAULT_RATE_LIMIT_WAIT = 1.0


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Jittered exponential backoff ("full jitter"), capped: uniform in [base, min(cap, base·2^n)]."""
    r = rng or random
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return r.uniform(min(base, ceiling), ceiling)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often a delivery is tried (``[delivery]`` of the configuration)."""

    backoff_base: float
    backoff_max: float
    # Seconds after the service received an alert without expiry that its deliveries stop trying.
    max_age: float
    max_give_back: float = MAX_GIVE_BACK
    rng: random.Random | None = field(default=None, compare=False)

    def backoff(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures (of a delivery, or of a whole channel)."""
        return backoff_delay(failures, self.backoff_base, self.backoff_max, self.rng)

    def deadline(self, claim: Claimed, now: datetime) -> datetime:
        """Until when ``claim`` is worth trying: its alert's expiry, else ``max_age`` after the alert came."""
        if claim.alert_expires is not None:
            return claim.alert_expires
        return (claim.alert_received or now) + timedelta(seconds=self.max_age)


class Said(enum.Enum):
    """What a provider's answer tells of its channel (the recorder keeps the channel's health by it)."""

    DELIVERED = "delivered"
    REJECTED = "rejected"
    RATE_LIMITED = "rate limited"
    # A transient failure: when every answer of a batch is one, the channel is failing.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Held:
    """The gate's answer: the delivery was not sent, and may go in ``seconds`` at the earliest."""

    seconds: float
    reason: str


@dataclass(frozen=True, slots=True)
class Pause:
    """A provider's request to wait: the whole channel (``bucket`` None) or one recipient's bucket."""

    seconds: float
    reason: str
    bucket: str | None = None


# Not frozen (but never changed): one is made for every delivery sent, and a frozen
# dataclass's __init__ costs several times as much.
@dataclass(slots=True)
class Decision:
    """The next state of one claimed delivery, and what else its answer says.

    ``spent``: the provider answered a real attempt, counted in ``attempts`` (a rate
    limit, a give-back or a delivery not sent spend none). ``said`` is None when the
    provider was not asked. ``late``: the deadline came before the next try.
    """

    state: DeliveryState
    error: str | None = None
    not_before: datetime | None = None
    spent: bool = False
    remote_id: str | None = None
    said: Said | None = None
    # The provider's own reason, for the channel's health and its pause.
    reason: str = ""
    pause: Pause | None = None
    unsubscribe: bool = False
    late: bool = False


def decide(answer: SendResult | Held, claim: Claimed, now: datetime, policy: RetryPolicy) -> Decision:
    """The next state of ``claim`` after ``answer`` at ``now`` (see the module docstring)."""
    if isinstance(answer, Delivered):
        return Decision(DeliveryState.DELIVERED, remote_id=answer.remote_id, spent=True, said=Said.DELIVERED)
    if isinstance(answer, Reject):
        return Decision(
            DeliveryState.FAILED,
            error=answer.reason,
            spent=True,
            said=Said.REJECTED,
            reason=answer.reason,
            unsubscribe=answer.unsubscribe and claim.subscription_id is not None,
        )
    if isinstance(answer, Held):
        not_before = now + timedelta(seconds=min(policy.max_give_back, max(0.0, answer.seconds)))
        return Decision(DeliveryState.QUEUED, error=answer.reason, not_before=not_before)
    pause: Pause | None = None
    if answer.rate_limited:
        wait = answer.after if answer.after is not None else DEFAULT_RATE_LIMIT_WAIT
        pause = Pause(wait, answer.reason, answer.bucket)
        error, spent, said = f"rate limited: {answer.reason}", False, Said.RATE_LIMITED
        # The channel's pause (in memory, in channel_state) holds it back that long; put
        # off by no more than max_give_back itself, it is due as soon as a resume ends the pause.
        delay = min(wait, policy.max_give_back) if answer.bucket is None else wait
    else:
        error, spent, said = answer.reason, True, Said.FAILED
        delay = answer.after if answer.after is not None else policy.backoff(claim.attempts + 1)
    next_try = now + timedelta(seconds=delay)
    deadline = policy.deadline(claim, now)
    if next_try <= deadline:
        return Decision(
            DeliveryState.QUEUED,
            error=error,
            not_before=next_try,
            spent=spent,
            said=said,
            reason=answer.reason,
            pause=pause,
        )
    # Too late for another try: end the delivery, saying why. The provider's pause
    # still holds the bucket.
    if claim.alert_expires is not None:
        state = DeliveryState.EXPIRED
        why = f"alert expires at {deadline.isoformat()} before the next try"
    else:
        state = DeliveryState.FAILED
        why = f"gave up: the next try would come after [delivery] max_age ({policy.max_age:g} s)"
    return Decision(
        state, error=f"{why}: {error}", spent=spent, said=said, reason=answer.reason, pause=pause, late=True
    )


def unsendable(claim: Claimed, now: datetime, *, alert_known: bool) -> Decision | None:
    """The next state of a claimed delivery that need not be sent at all; None when it must be sent.

    Its alert was cancelled or superseded, or expired, before the send; or its row is gone.
    """
    if claim.alert_state in ("cancelled", "superseded"):
        return Decision(DeliveryState.SUPERSEDED, error=f"alert {claim.alert_state} before sending")
    if claim.alert_expires is not None and claim.alert_expires <= now:
        return Decision(DeliveryState.EXPIRED, error=f"alert expired at {claim.alert_expires.isoformat()}")
    if not alert_known:
        return Decision(DeliveryState.FAILED, error="alert row not found")
    return None
