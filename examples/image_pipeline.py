"""Image-processing pipeline: CPU-bound jobs, one worker per core, uploads first.

The spec's second real-world scenario, with a local stand-in for an image
library: an "image" is 256 KiB of synthetic pixels, and processing it makes a
thumbnail (every 4th pixel), compresses it with zlib and fingerprints it with
SHA-256.  zlib and hashlib do their work in C *with the GIL released*, which
is what real image libraries (Pillow, OpenCV) do too: that is why threads can
use every core here.  (A pure-Python filter would hold the GIL, and extra
threads would only take turns: see ``python -m examples.pitfalls workers``.)

Part 1 times the same batch with 1 worker, one per core, and four per core.
Part 2 runs a backlog of LOW-priority batch jobs, then lets three user
uploads arrive as HIGH: they overtake the backlog, and the backlog still moves.

    python -m examples.image_pipeline [--images 64]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import random
import threading
import time
import zlib
from collections.abc import Sequence

from jobqueue.final import Config, Job, JobQueue, Priority

IMAGE_BYTES = 256 * 1024


def make_image(seed: int) -> bytes:
    """Synthetic pixels: half noise, half a smooth gradient, so zlib has work to do."""
    noise = random.Random(seed).randbytes(IMAGE_BYTES // 2)
    gradient = bytes(range(256)) * (IMAGE_BYTES // 2 // 256)
    return noise + gradient


def process_image(payload: bytes) -> None:
    """Thumbnail, compress, fingerprint: the work of a real pipeline, in C."""
    thumbnail = payload[::4]
    compressed = zlib.compress(payload, 6)  # releases the GIL while it works
    digest = hashlib.sha256(compressed + thumbnail).hexdigest()  # so does this
    if not digest:
        raise ValueError("empty digest")  # never: keeps the work from being optimised away


def time_batch(images: list[bytes], workers: int) -> float:
    """Seconds to process ``images`` with ``workers`` workers."""
    config = Config(num_workers=workers, handler=process_image)
    with JobQueue(config) as jq:
        started = time.perf_counter()
        for i, image in enumerate(images):
            jq.enqueue(Job(id=f"img-{i}", payload=image))
        jq.join()
        return time.perf_counter() - started


def uploads_overtake_the_backlog(backlog: int) -> tuple[list[str], dict[str, float]]:
    """A LOW backlog is running when three HIGH uploads arrive.

    Returns the ids in the order they finished, and each job's seconds from
    enqueue to finish.
    """
    finished: list[str] = []
    enqueued_at: dict[str, float] = {}
    waited: dict[str, float] = {}
    lock = threading.Lock()
    first_started = threading.Event()

    def handler(payload: bytes) -> None:
        job_id, _, image = payload.partition(b"\0")  # the id rides in front of the pixels
        first_started.set()
        process_image(image)
        with lock:
            finished.append(job_id.decode())
            waited[job_id.decode()] = time.perf_counter() - enqueued_at[job_id.decode()]

    # One worker per core: the work is CPU-bound, more threads would only queue for cores.
    config = Config(num_workers=os.cpu_count() or 1, handler=handler)
    image = make_image(0)
    with JobQueue(config) as jq:

        def enqueue(job_id: str, priority: Priority) -> None:
            enqueued_at[job_id] = time.perf_counter()
            jq.enqueue(Job(id=job_id, priority=priority, payload=job_id.encode() + b"\0" + image))

        for i in range(backlog):
            enqueue(f"batch-{i}", Priority.LOW)
        first_started.wait(10)
        for i in range(3):
            enqueue(f"upload-{i}", Priority.HIGH)
        jq.join()
    return finished, waited


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="images per timed batch")
    args = parser.parse_args(argv)
    logging.basicConfig(format="  log: %(levelname)s %(name)s: %(message)s")
    cores = os.cpu_count() or 1
    images = [make_image(seed) for seed in range(args.images)]
    print(f"Part 1: {args.images} images of {IMAGE_BYTES // 1024} KiB, on {cores} cores.")
    timings = {workers: time_batch(images, workers) for workers in (1, cores, 4 * cores)}
    for workers, seconds in timings.items():
        print(
            f"  {workers:>2} workers: {seconds:.2f} s, {args.images / seconds:.0f} images/s "
            f"({timings[1] / seconds:.1f}x one worker)"
        )
    print(
        f"  {4 * cores} workers vs {cores}: {timings[cores] / timings[4 * cores]:.2f}x the speed; "
        f"the C code runs on at most {cores} cores at once, extra threads wait for one."
    )

    backlog = max(8, args.images // 2)
    order, waited = uploads_overtake_the_backlog(backlog)
    uploads = [i + 1 for i, job_id in enumerate(order) if job_id.startswith("upload")]
    batch_last = max(i + 1 for i, job_id in enumerate(order) if job_id.startswith("batch"))
    upload_wait = max(waited[j] for j in order if j.startswith("upload"))
    batch_wait = max(waited[j] for j in order if j.startswith("batch"))
    print(f"Part 2: {backlog} LOW batch images queued; 3 HIGH uploads arrive once work begins.")
    print(
        f"  uploads finished {', '.join(map(str, uploads))} of {len(order)}, "
        f"within {upload_wait * 1e3:.0f} ms; the backlog took {batch_wait * 1e3:.0f} ms, "
        f"its last image finished {batch_last} of {len(order)}."
    )
    overtook = max(uploads) < batch_last
    print(f"Uploads overtook the backlog: {'yes' if overtook else 'no'}.")
    return 0 if overtook else 1


if __name__ == "__main__":
    raise SystemExit(main())
