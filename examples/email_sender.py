"""Background email sender: I/O-bound jobs, more workers than cores, retries.

The spec's first real-world scenario, against a local stand-in for an SMTP
server (no network): each send waits a few milliseconds, as a network call
would, and the server refuses some messages the first time ("421 try again
later"), so they are retried with exponential backoff.  The server is
idempotent: it keeps one copy per Message-ID, so a retried send never
delivers twice.

It sends the same batch twice, with 1 worker and with 10, and prints what
happened.  Sending is waiting, and a waiting thread releases the GIL, so ten
workers send about ten times faster even on a 2-core machine.

    python -m examples.email_sender [--emails 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from jobqueue.final import Config, Job, JobQueue, Metrics, Priority

#: How long one send waits on the (pretend) network.
SEND_SECONDS = 0.005


class TransientSMTPError(Exception):
    """The server said "421 try again later"."""


class FakeSMTPServer:
    """A local stand-in for an SMTP relay.  Thread-safe.

    Every 7th message is refused on its first try.  Delivery is idempotent:
    a message is stored once per Message-ID, whatever the number of sends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tries: dict[str, int] = {}
        self.inbox: dict[str, dict[str, str]] = {}  # Message-ID -> message
        self.refused = 0

    def send(self, message: dict[str, str]) -> None:
        time.sleep(SEND_SECONDS)  # the network round trip: releases the GIL
        message_id = message["message_id"]
        with self._lock:
            self._tries[message_id] = tries = self._tries.get(message_id, 0) + 1
            if int(message_id.rsplit("-", 1)[1]) % 7 == 0 and tries == 1:
                self.refused += 1
                raise TransientSMTPError(f"421 try again later ({message_id})")
            self.inbox.setdefault(message_id, message)  # idempotent: one copy per id


@dataclass(frozen=True, slots=True)
class Run:
    workers: int
    seconds: float
    delivered: int
    refused: int
    metrics: Metrics


def send_batch(count: int, workers: int) -> Run:
    """Send ``count`` emails through a queue with ``workers`` workers."""
    server = FakeSMTPServer()

    def send_email(payload: bytes) -> None:
        server.send(json.loads(payload))

    config = Config(
        num_workers=workers,
        queue_size=10_000,
        max_retries=3,
        retry_base_delay=0.01,  # the spec's 1 s, scaled down for a demo
        handler=send_email,
    )
    started = time.monotonic()
    with JobQueue(config) as jq:
        for i in range(count):
            message = {
                "message_id": f"welcome-{i}",
                "to": f"user{i}@example.test",
                "subject": "Welcome!",
                "body": "Thanks for signing up.",
            }
            job = Job(
                id=message["message_id"],
                priority=Priority.MEDIUM,
                payload=json.dumps(message).encode(),
            )
            jq.enqueue(job, timeout=5.0)  # blocks while the queue is full
        jq.join()
        seconds = time.monotonic() - started
        metrics = jq.metrics()
    return Run(workers, seconds, len(server.inbox), server.refused, metrics)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=200, help="emails per batch")
    args = parser.parse_args(argv)
    logging.basicConfig(format="  log: %(levelname)s %(name)s: %(message)s")
    print(f"Sending {args.emails} emails; each send waits {SEND_SECONDS * 1e3:.0f} ms.")
    runs = [send_batch(args.emails, workers) for workers in (1, 10)]
    for run in runs:
        m = run.metrics
        print(
            f"  {run.workers:>2} worker{'s' if run.workers > 1 else ' '}: "
            f"{run.delivered} delivered in {run.seconds:.2f} s; "
            f"{run.refused} refused once and retried (metrics: completed={m.completed}, "
            f"retried={m.retried}, failed={m.failed}); utilization {m.utilization:.0%}"
        )
    one, ten = runs
    print(
        f"10 workers were {one.seconds / ten.seconds:.1f}x faster than 1: "
        "the work is waiting, and a waiting thread releases the GIL."
    )
    lost = sum(args.emails - run.delivered for run in runs)
    print(f"Every email delivered exactly once: {'yes' if lost == 0 else f'no, {lost} missing'}.")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
