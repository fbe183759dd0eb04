"""Claiming ahead: how many jobs the fetcher claims beyond its idle workers.

A claim is a round trip and a commit, however many jobs it takes.  Claiming
only for idle workers, a process of four workers running short jobs spends
most of its time waiting for claims of at most four jobs.  So the fetcher
keeps a few jobs claimed ahead, ready for the next free worker, and claims
again once half of them have started: the workers do not wait for a round
trip, and each claim carries more jobs.

How many: as many as this process's workers start during one claim round
trip, twice over (both measured: moving averages of the claim round trips and
of the runs), and at most ``8 * num_workers``.  Short jobs get the full depth;
a job of ten milliseconds one or two; long jobs none.  So what is claimed
ahead starts within about two claim round trips, never behind a long run
while another process could start it (the cap only bounds a run time
measured as nearly nothing).  And only from a deep backlog: at least ``8 * num_workers`` jobs
still queued after the claim, of a priority this process may claim.  With a
shallow one (the queue keeps up) nothing is claimed ahead: a job is never
held here while another process has an idle worker, and a job that waits
behind busy workers is QUEUED, counted against ``queue_size``, as in the
in-process queue.

Not thread-safe on its own: the queue's mutex guards it.
"""

from __future__ import annotations

import math

__all__ = ["Ahead"]

_WEIGHT = 0.125  # of the newest sample in each moving average
_MARGIN = 2.0  # claim ahead twice what starts during one claim round trip
_PER_WORKER = 8  # the most claimed ahead, per worker; also the deep backlog, per worker


class Ahead:
    """The claim-ahead depth of one queue's fetcher, from what it has measured."""

    __slots__ = ("_claim", "_run", "_workers", "deep", "depth", "most")

    def __init__(self, num_workers: int) -> None:
        self._workers = num_workers
        self.most = _PER_WORKER * num_workers  # the cap; and a deep backlog is this many
        self._run: float | None = None  # seconds of one run, moving average
        self._claim: float | None = None  # seconds of one claim round trip, moving average
        self.deep = False  # the last claim left a deep backlog
        self.depth = 0  # jobs to keep claimed ahead now

    def ran(self, seconds: float) -> None:
        """A worker ran a job for ``seconds``."""
        self._run = seconds if self._run is None else self._run + _WEIGHT * (seconds - self._run)

    def claimed(self, seconds: float, deep: bool) -> None:
        """A claim took ``seconds``, and left a deep backlog (``deep``) or not."""
        self._claim = (
            seconds if self._claim is None else self._claim + _WEIGHT * (seconds - self._claim)
        )
        self.deep = deep
        if not deep or self._run is None:
            self.depth = 0  # shallow, or no run seen yet (a held first job, say)
            return
        starts = self._workers * self._claim / max(self._run, 1e-6)
        self.depth = min(self.most, math.ceil(_MARGIN * starts))

    def lost(self) -> None:
        """A claim found nothing, or failed: claim for idle workers only until the next."""
        self.deep = False
        self.depth = 0

    def wanted(self, idle: int, ready: int) -> int:
        """Jobs to claim now, with ``idle`` workers waiting and ``ready`` claims not
        started; 0 to wait.  For every idle worker without a claim at once; ahead,
        only once half the depth is missing (not a round trip per started job)."""
        short = idle - ready
        if not self.depth:
            return max(0, short)
        wanted = short + self.depth
        return wanted if short > 0 or 2 * wanted >= self.depth else 0
