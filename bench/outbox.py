"""Bench: the outbox alone, no provider.

1. Enqueue: one alert fanned out to 100,000 recipients by the pipeline's
   ``INSERT … SELECT`` (``dispatcher.store.fanout.fan_out``), timed alone.
   Goal: < 1.5 s.
2. Claim-and-complete: workers (one connection each) loop ``claim`` (``FOR UPDATE
   SKIP LOCKED``) → ``complete`` (one ``UPDATE … FROM unnest``) until the queue is
   empty; deliveries/s. Goal: ≥ 20,000/s on a 2-core machine.

Run: ``.venv/bin/python bench/outbox.py [--recipients N] [--claim N] [--workers N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _common import NUMAZU, add_subscriptions, make_alert, scratch_database, table

from dispatcher.store import alerts as alert_store
from dispatcher.store import db, fanout, outbox

CHANNEL = "telegram"


async def enqueue(dsn: str, recipients: int) -> tuple[float, float, int]:
    """(seconds to create subscriptions, seconds of the fan-out transaction, rows)."""
    conn = await db.connect(dsn)
    try:
        t0 = time.perf_counter()
        await add_subscriptions(conn, CHANNEL, [str(1_000_000 + i) for i in range(recipients)])
        await conn.execute("ANALYZE")
        setup = time.perf_counter() - t0
        alert = make_alert("bench-outbox-1")
        t0 = time.perf_counter()
        async with conn.transaction():
            alert_id = await alert_store.insert_alert(conn, alert, target_codes=[NUMAZU], document_id=None)
            assert alert_id is not None
            rows = await fanout.fan_out(
                conn,
                alert_id=alert_id,
                priority=int(alert.priority),
                channels=[CHANNEL],
                target_codes=[NUMAZU],
                public=True,
            )
        fan_out = time.perf_counter() - t0
    finally:
        await conn.close()
    return setup, fan_out, rows


async def drain(dsn: str, claim_size: int, workers: int) -> tuple[int, float, int]:
    """Claim-and-complete until empty; (deliveries, seconds, round trips)."""
    pool = await db.create_pool(dsn, min_size=workers, max_size=workers)
    total = 0
    rounds = 0

    async def worker() -> None:
        nonlocal total, rounds
        async with pool.acquire() as conn:
            while True:
                claimed = await outbox.claim(conn, CHANNEL, claim_size, 60.0)
                if not claimed:
                    return
                await outbox.complete(
                    conn,
                    [
                        outbox.Completion(c.id, "delivered", remote_id=str(c.id), spent=True, claim=c.claim)
                        for c in claimed
                    ],
                )
                total += len(claimed)
                rounds += 1

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - t0
    finally:
        await pool.close()
    return total, elapsed, rounds


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--recipients", type=int, default=100_000)
    ap.add_argument("--claim", type=int, default=1000, help="deliveries per claim")
    ap.add_argument("--workers", type=int, default=2, help="concurrent claimers")
    args = ap.parse_args()
    async with scratch_database("bench_outbox") as dsn:
        setup, fan_out, rows = await enqueue(dsn, args.recipients)
        print(f"subscriptions created in {setup:.2f} s", flush=True)
        total, elapsed, rounds = await drain(dsn, args.claim, args.workers)
    rate = total / elapsed if elapsed else 0.0
    print()
    print(
        table(
            ["measure", "value", "goal", "ok"],
            [
                [f"enqueue: fan-out of 1 alert to {rows:,} recipients (s)", fan_out, "< 1.5", fan_out < 1.5],
                [
                    f"claim+complete ({args.workers} workers × {args.claim}/claim), deliveries/s",
                    rate,
                    ">= 20,000",
                    rate >= 20_000,
                ],
                ["claim+complete: deliveries / round trips", f"{total:,} / {rounds:,}", "", ""],
                ["claim+complete: wall time (s)", elapsed, "", ""],
            ],
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
