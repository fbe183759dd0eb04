"""Pause and resume for ``final``: stop starting jobs of some priorities, for a deploy say.

A paused priority starts no new job; its jobs stay QUEUED, enqueues are still
accepted within the bound, and running jobs finish.  The fairness picker
sees a paused priority as empty, so the fairness bound applies to what is not
paused, and a paused LOW earns no tokens that would let a burst through on
resume.  ``pause()`` with no priority pauses every one.

Not thread-safe on its own: the queue's mutex guards it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from jobqueue.vocabulary import Priority

if TYPE_CHECKING:
    from jobqueue.final.queue import JobQueue

__all__ = ["Pauses", "pause"]


class Pauses:
    """Which priorities are paused.  ``any`` is the hot path's one check."""

    __slots__ = ("any", "paused")

    def __init__(self) -> None:
        self.paused = [False] * len(Priority)
        self.any = False

    def set(self, priority: Priority | None, paused: bool) -> None:
        """Pause (or resume) ``priority``, or every priority if None."""
        if priority is None:
            self.paused = [paused] * len(Priority)
        else:
            if not isinstance(priority, Priority):
                raise TypeError(f"priority must be a Priority or None, got {priority!r}")
            self.paused[priority] = paused
        self.any = any(self.paused)

    def mask(self, waiting: Sequence[object]) -> list[int]:
        """1 where jobs wait (``waiting[p]`` true) and the priority is not paused, else 0."""
        return [int(bool(w) and not paused) for w, paused in zip(waiting, self.paused, strict=True)]

    def frozen(self) -> frozenset[Priority]:
        return frozenset(p for p in Priority if self.paused[p])


def pause(jq: JobQueue, priority: Priority | None, paused: bool) -> None:
    """``jq.pause(priority)`` (``paused``) or ``jq.resume(priority)``."""
    with jq._mutex:
        jq._pauses.set(priority, paused)
        if not paused:
            jq._not_empty.notify_all()  # the workers sleep while only paused jobs wait
