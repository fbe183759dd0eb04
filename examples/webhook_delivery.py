"""Webhook delivery with persistence: retries, a dead letter, and a restart mid-way.

The spec's third real-world scenario, against local stand-ins (no network):
``Receivers`` plays the customers' endpoints.  Most answer at once; "flaky"
answers 503 twice before it accepts; "gone" always answers 410, so its
deliveries are dead-lettered after ``max_retries``.  Receivers are
idempotent: they keep one copy per delivery id, as the ``Webhook-Id`` header
of real webhook schemes lets them, so a delivery repeated after a crash does
no harm.

The queue is durable (``persist_path``).  The program enqueues a batch,
closes the queue while most deliveries still wait (a deploy, say), opens a
new queue on the same log, and the rest are delivered: nothing accepted is
lost.  Critical webhooks go first (``Priority.HIGH``).

    python -m examples.webhook_delivery [--webhooks 60] [--log PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from jobqueue.final import Config, Job, JobQueue, Priority, Status

#: How long one delivery waits on the (pretend) network.
DELIVERY_SECONDS = 0.01


class DeliveryError(Exception):
    """The endpoint answered with an error status."""


class Receivers:
    """Local stand-ins for the customers' webhook endpoints.  Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.attempts: Counter[str] = Counter()  # by delivery id
        self.received: dict[str, dict[str, str]] = {}  # delivery id -> body, one copy each
        self.duplicates = 0  # deliveries that arrived again, and were ignored

    def post(self, endpoint: str, delivery_id: str, body: dict[str, str]) -> None:
        time.sleep(DELIVERY_SECONDS)  # the network round trip
        with self._lock:
            self.attempts[delivery_id] += 1
            if endpoint == "gone":
                raise DeliveryError(f"410 Gone from {endpoint} for {delivery_id}")
            if endpoint == "flaky" and self.attempts[delivery_id] <= 2:
                raise DeliveryError(f"503 Service Unavailable from {endpoint} for {delivery_id}")
            if delivery_id in self.received:
                self.duplicates += 1  # idempotent: already have it
                return
            self.received[delivery_id] = body


def endpoint_of(i: int) -> str:
    return "gone" if i == 7 else "flaky" if i % 10 == 3 else "ok"


def config(log: Path, receivers: Receivers, workers: int) -> Config:
    def deliver(payload: bytes) -> None:
        webhook = json.loads(payload)
        receivers.post(webhook["endpoint"], webhook["delivery_id"], webhook["body"])

    return Config(
        num_workers=workers,  # I/O-bound: network waits release the GIL
        queue_size=50_000,
        max_retries=5,  # webhooks fail temporarily: try hard before giving up
        retry_base_delay=0.02,  # the spec's 1 s, scaled down for a demo
        retry_jitter=0.5,  # spread retries to one endpoint that failed together
        persist_path=log,
        # A durable job names its handler: a function cannot be written to the log.
        handlers={"deliver": deliver},
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=60, help="webhooks to deliver")
    parser.add_argument("--log", type=Path, help="the job log (default: a temporary file)")
    args = parser.parse_args(argv)
    logging.basicConfig(format="  log: %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="webhooks-") as scratch:
        log = args.log or Path(scratch) / "webhooks.jsonl"
        return deliver_all(args.webhooks, log)


def deliver_all(count: int, log: Path) -> int:
    receivers = Receivers()
    ids = [f"wh-{i}" for i in range(count)]
    print(f"Delivering {count} webhooks through the durable log {log.name}.")

    # First life: accept every webhook, then shut down while most still wait.
    with JobQueue(config(log, receivers, workers=2)) as jq:
        for i, delivery_id in enumerate(ids):
            critical = i % 5 == 0
            webhook = {
                "endpoint": endpoint_of(i),
                "delivery_id": delivery_id,
                "body": {"event": "invoice.paid", "invoice": f"inv-{i}"},
            }
            jq.enqueue(
                Job(
                    id=delivery_id,
                    priority=Priority.HIGH if critical else Priority.MEDIUM,
                    payload=json.dumps(webhook).encode(),
                    handler="deliver",
                ),
                timeout=5.0,
            )
        print(f"  accepted {count} webhooks (each enqueue returned: it is in the log)")
    before = len(receivers.received)
    print(f"  closed the queue (a deploy): {before} delivered, {count - before} still waiting")

    # Second life: a new queue on the same log picks up where the first stopped.
    with JobQueue(config(log, receivers, workers=20)) as jq:
        jq.join()
        m = jq.metrics()  # counts this queue's jobs only: all of them came from the log
        statuses = Counter(jq.status(delivery_id) for delivery_id in ids)
    delivered = len(receivers.received)
    flaky = [d for i, d in enumerate(ids) if endpoint_of(i) == "flaky"]
    gone = [d for i, d in enumerate(ids) if endpoint_of(i) == "gone"]
    print(
        f"  reopened: {m.completed + m.failed} jobs recovered from the log and run: "
        f"completed={m.completed}, retried={m.retried}, failed={m.failed} (dead-lettered)"
    )
    print(
        f"Delivered {delivered} of {count}; flaky endpoint took "
        f"{max((receivers.attempts[d] for d in flaky), default=0)} attempts; "
        f"'gone' endpoint: {len(gone)} dead-lettered after "
        f"{max((receivers.attempts[d] for d in gone), default=0)} attempts."
    )
    print(
        "Statuses after restart: "
        + ", ".join(f"{s.name.lower() if s else 'unknown'}={n}" for s, n in statuses.items())
    )
    print(f"Duplicates ignored by the idempotent receivers: {receivers.duplicates}.")
    expected = count - len(gone)
    lost = expected - delivered
    print(f"Nothing lost: {'yes' if lost == 0 else f'no, {lost} missing'}.")
    return 0 if lost == 0 and statuses[Status.FAILED] == len(gone) else 1


if __name__ == "__main__":
    raise SystemExit(main())
