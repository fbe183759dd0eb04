"""Webhook delivery with persistence: retries, a dead letter, and a restart mid-way.

The spec's third real-world scenario, against local stand-ins (no network):
``Receivers`` plays the customers' endpoints.  Most answer at once; "flaky"
answers 503 twice before it accepts; "gone" answers 410, a 4xx that no retry
cures, so the handler raises ``PermanentFailure`` and the delivery fails at
once.  Receivers are idempotent: they keep one copy per delivery id, as the
``Webhook-Id`` header of real webhook schemes lets them, so a delivery
repeated after a crash does no harm.  The handler takes that id from
``current_job().job.id``: the job id is the idempotency key.

A payment reminder is scheduled an hour ahead (``Job(run_at=...)``) and
cancelled when the invoice is paid; a redelivery is scheduled a moment ahead
and survives the restart; a ping is ``submit()``-ted and waited on.

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

from jobqueue.final import Config, Job, JobQueue, PermanentFailure, Priority, Status, current_job

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

    def post(self, endpoint: str, delivery_id: str, body: dict[str, str]) -> int:
        """Deliver, and return the HTTP status; raise for an error answer."""
        time.sleep(DELIVERY_SECONDS)  # the network round trip
        with self._lock:
            self.attempts[delivery_id] += 1
            if endpoint == "gone":  # a 4xx: the endpoint will not come back, do not retry
                raise PermanentFailure(f"410 Gone from {endpoint} for {delivery_id}")
            if endpoint == "flaky" and self.attempts[delivery_id] <= 2:
                raise DeliveryError(f"503 Service Unavailable from {endpoint} for {delivery_id}")
            if delivery_id in self.received:
                self.duplicates += 1  # idempotent: already have it
                return 200
            self.received[delivery_id] = body
            return 200


def endpoint_of(i: int) -> str:
    return "gone" if i == 7 else "flaky" if i % 10 == 3 else "ok"


def config(log: Path, receivers: Receivers, workers: int) -> Config:
    def deliver(payload: bytes) -> int:
        ctx = current_job()
        assert ctx is not None  # always set inside a handler
        webhook = json.loads(payload)
        # The job id is the idempotency key: a re-run after a crash carries the same one.
        return receivers.post(webhook["endpoint"], ctx.job.id, webhook["body"])

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
        jq.enqueue(webhook_job("reminder-1", time.time() + 3600.0))  # due in an hour...
        cancelled = jq.cancel("reminder-1")  # ...but the invoice was paid: never sent
        print(f"  payment reminder scheduled, then cancelled: {cancelled}")
        jq.enqueue(
            webhook_job("redelivery-3", time.time() + 0.2)
        )  # shortly: maybe after the deploy
    before = len(receivers.received)
    print(f"  closed the queue (a deploy): {before} delivered, {count - before} still waiting")

    # Second life: a new queue on the same log picks up where the first stopped.
    with JobQueue(config(log, receivers, workers=20)) as jq:
        ping = jq.submit(webhook_job("ping-1", None))
        print(f"  a ping submitted and waited on: HTTP {ping.result(timeout=30.0)}")
        jq.join()
        reminder = jq.status("reminder-1")
        redelivered = "redelivery-3" in receivers.received
        print(
            f"  after the restart: reminder {reminder.name.lower() if reminder else 'unknown'}, "
            f"redelivery {'delivered' if redelivered else 'lost'}"
        )
        m = jq.metrics()  # counts this queue's jobs only: all of them came from the log
        statuses = Counter(jq.status(delivery_id) for delivery_id in ids)
    delivered = sum(1 for delivery_id in ids if delivery_id in receivers.received)
    flaky = [d for i, d in enumerate(ids) if endpoint_of(i) == "flaky"]
    gone = [d for i, d in enumerate(ids) if endpoint_of(i) == "gone"]
    print(
        f"  reopened: {m.completed + m.failed} jobs run (all but the ping from the log): "
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


def webhook_job(job_id: str, run_at: float | None) -> Job:
    """A webhook to the "ok" endpoint, due at ``run_at`` (None: now)."""
    webhook = {"endpoint": "ok", "body": {"event": "invoice.reminder", "invoice": job_id}}
    return Job(id=job_id, payload=json.dumps(webhook).encode(), handler="deliver", run_at=run_at)


if __name__ == "__main__":
    raise SystemExit(main())
