"""The second process of the ``beyond_one_process`` scenario: a program, not a library module.

``python -m jobqueue.lab.scenarios.share_child STAGE PATH ID`` opens a queue of
``jobqueue.STAGE`` on the log ``PATH`` while another process has it open, and
prints one line: ``status S``, the status of job ``ID`` as this process sees it,
or ``error: TYPE: MESSAGE`` if it cannot tell.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobqueue.lab.scenarios.base import load_stage


def _nothing(payload: bytes) -> None:
    pass


def main(argv: Sequence[str]) -> int:
    stage_name, path, job_id = argv
    stage = load_stage(stage_name)
    try:
        queue = stage.JobQueue(stage.Config(num_workers=1, handler=_nothing, persist_path=path))
        try:
            status = queue.status(job_id)
        finally:
            queue.close()
    except Exception as exc:  # the answer to report, whatever it is
        print(f"error: {type(exc).__name__}: {exc}", flush=True)
        return 0
    print(f"status {status.value if status is not None else None}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
