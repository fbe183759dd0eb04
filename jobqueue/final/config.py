"""Settings for ``final``: the shared ``Config`` plus what only ``final`` has."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType

from jobqueue import vocabulary
from jobqueue.vocabulary import Handler

__all__ = ["FSYNC_POLICIES", "Config", "final_config"]

#: When the log calls fsync: after every enqueue ("always", group-committed),
#: at least once a second ("interval"), or never: the OS decides ("never").
#: Under all three a returned enqueue survives ``kill -9``; they differ only
#: in what a power loss or kernel crash may take (docs/durability.md).
FSYNC_POLICIES = ("always", "interval", "never")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config(vocabulary.Config):
    """``jobqueue.Config`` plus the settings only ``final`` has."""

    handlers: Mapping[str, Handler] = field(default_factory=dict)  # named handlers
    retry_jitter: float = 0.0  # each backoff moves by up to this fraction, at random
    status_history: int = 10_000  # finished statuses remembered (0 to 10**9), oldest dropped first
    # One of FSYNC_POLICIES; only with persist_path.  "interval", as Redis's
    # appendfsync everysec: it keeps the contract (kill -9) at the speed of
    # "never", and a power loss takes at most about a second of enqueues.
    fsync: str = "interval"

    def __post_init__(self) -> None:
        # Explicit base call: zero-argument super() breaks in slotted dataclasses.
        vocabulary.Config.__post_init__(self)
        if not isinstance(self.handlers, Mapping):
            raise TypeError(f"handlers must be a mapping, got {type(self.handlers).__name__}")
        for name, handler in self.handlers.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"handlers: names must be non-empty str, got {name!r}")
            if not callable(handler):
                raise TypeError(f"handlers[{name!r}] must be callable")
        object.__setattr__(self, "handlers", MappingProxyType(dict(self.handlers)))
        if isinstance(self.retry_jitter, bool) or not isinstance(self.retry_jitter, int | float):
            raise TypeError(f"retry_jitter must be a float, got {self.retry_jitter!r}")
        if not 0 <= self.retry_jitter <= 0.5:
            raise ValueError(f"retry_jitter must be between 0 and 0.5, got {self.retry_jitter}")
        vocabulary.require_count("status_history", self.status_history, 0, vocabulary.MAX_COUNT)
        if self.fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, got {self.fsync!r}")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based), jitter included."""
        delay = self.retry_delay(retry)
        jitter = self.retry_jitter
        # Jitter spreads retries that failed together, so they don't return together.
        return delay * random.uniform(1 - jitter, 1 + jitter) if jitter else delay


def final_config(config: vocabulary.Config | None) -> Config:
    """``config`` as a final ``Config``: the default for None, a shared one's fields as they are."""
    if config is None:
        return Config()
    if isinstance(config, Config):
        return config
    if isinstance(config, vocabulary.Config):
        return Config(**{f.name: getattr(config, f.name) for f in fields(vocabulary.Config)})
    raise TypeError(f"config must be a Config, got {type(config).__name__}")
