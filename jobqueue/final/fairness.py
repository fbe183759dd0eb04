"""Token fairness: which priority a worker serves next.

``improved`` always serves the highest non-empty priority, so a steady flood
of HIGH jobs starves LOW forever.  ``final`` keeps priority order but bounds
how long a waiting job can be passed over.

Every time a job is taken while a lower priority has jobs waiting, that lower
priority earns a token.  A priority holding ``tokens`` tokens is owed a turn
and gets the next one.  With the default of 10 and a HIGH flood, that is one
lower-priority job per 10 HIGH jobs, as the spec asks.  Under a flood of HIGH
and MEDIUM both, LOW still earns a token on every take, so it is served too.
A priority's tokens reset when it is served or when it runs empty.

This is the spec's "token-based fairness" (``tokens = 10``, take one LOW when
they run out), generalised to three levels so that MEDIUM and LOW are both
protected, and stated as one rule so that its bound is easy to test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from jobqueue.vocabulary import Priority

if TYPE_CHECKING:
    from jobqueue.final.pause import Pauses

__all__ = ["FairPicker"]

_PRIORITIES = tuple(Priority)  # iterating the enum class itself is several times slower


class FairPicker:
    """Chooses the priority to serve next.  Not thread-safe: the queue's mutex guards it.

    The bound it guarantees: a priority with a job waiting is served after at
    most ``tokens`` takes of other priorities, plus one per other lower
    priority owed a turn at the same moment (at most ``tokens + 1`` with
    three levels).
    """

    __slots__ = ("_passed_over", "pauses", "tokens")

    def __init__(self, tokens: int) -> None:
        if tokens < 1:
            raise ValueError(f"fairness_tokens must be >= 1, got {tokens}")
        self.tokens = tokens
        self._passed_over = [0] * len(Priority)  # tokens earned, by priority
        # A paused priority starts no job, so it looks empty (pause.py).  None: no pauses.
        self.pauses: Pauses | None = None

    def choose(self, waiting: Sequence[object]) -> Priority | None:
        """Pick the priority to take the next job from, and update the tokens.

        ``waiting[p]`` is true when jobs wait at priority ``p``: a count, or the
        queue itself.  Returns None when nothing waits.
        """
        if self.pauses is not None and self.pauses.any:
            waiting = self.pauses.mask(waiting)
        passed_over, chosen = self._passed_over, None
        for p in _PRIORITIES:
            # The fairness rule: serve the most urgent priority with a job
            # waiting, unless a less urgent one is owed a turn (passed over
            # `tokens` times) and was passed over longer (ties: the more urgent).
            if waiting[p] and (
                chosen is None or passed_over[p] > max(passed_over[chosen], self.tokens - 1)
            ):
                chosen = p
        if chosen is None:
            self._passed_over = [0] * len(_PRIORITIES)  # nobody waits: nobody is owed
            return None
        for p in _PRIORITIES:
            if p == chosen or not waiting[p]:
                passed_over[p] = 0
            elif p > chosen:  # a less urgent priority waited while `chosen` was served
                passed_over[p] += 1
        return chosen
