"""Bench: 1,000 SIGKILLs of the real daemon at random moments; loss and duplicate rate.

The harness is the one of ``tests/integration/test_crash.py`` (:class:`CrashRun`): the
daemon runs as a subprocess against a Telegram Bot API stand-in and a webhook receiver,
is killed with SIGKILL at a random moment after it starts sending, restarted, and at
the end the providers' own logs are compared with what was queued. Every duplicate
must be explained by a lease-expiry requeue (the kill fell between the provider's
acceptance and the commit). Takes about 2 s per kill.

Run: ``.venv/bin/python bench/crash.py [--kills N] [--seed N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from _common import scratch_database, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.test_crash import CrashRun


async def main() -> None:
    ap = argparse.ArgumentParser(description="SIGKILL fault injection")
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chats", type=int, default=40)
    args = ap.parse_args()
    async with scratch_database("bench_crash") as dsn:
        with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
            run = CrashRun(dsn, Path(tmp), kills=args.kills, chats=args.chats, seed=args.seed)
            report = await run.run(progress=True)
    print()
    print(
        table(
            ["measure", "value"],
            [
                ["kill points (SIGKILL)", report.kills],
                ["alerts queued", report.alerts],
                ["deliveries expected", report.expected],
                ["provider acceptances", report.received],
                ["lost", report.lost],
                ["not finished (still queued or sending at the end)", report.unfinished],
                ["duplicates", report.duplicates],
                ["duplicate rate (of deliveries)", f"{report.duplicate_rate:.3%}"],
                ["duplicates per kill", report.duplicates / report.kills if report.kills else 0.0],
                [
                    "webhook duplicates / with the same Idempotency-Key",
                    f"{report.webhook_duplicates} / {report.webhook_same_key}",
                ],
                ["lease-expiry requeues", report.lease_requeues],
                ["every duplicate explained by a lease expiry", report.explained],
                ["wall time (s)", report.seconds],
            ],
        )
    )
    for problem in report.problems[:20]:
        print("problem:", problem)
    sys.exit(0 if report.lost == 0 and report.explained and not report.problems else 1)


if __name__ == "__main__":
    asyncio.run(main())
