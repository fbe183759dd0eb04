"""Settings for ``final``: the shared ``Config`` plus what only ``final`` has."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType

from jobqueue import vocabulary
from jobqueue.vocabulary import Handler

__all__ = ["FSYNC_POLICIES", "Config"]

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
    status_history: int = 10_000  # finished statuses remembered, oldest dropped first
    # One of FSYNC_POLICIES; only with persist_path.  "interval", as Redis's
    # appendfsync everysec: it keeps the contract (kill -9) at the speed of
    # "never", and a power loss takes at most about a second of enqueues.
    fsync: str = "interval"
    # final on PostgreSQL (final/postgres/): every process that opens the same
    # database and queue_name shares one queue; claimed jobs hold a lease of
    # lease_timeout seconds, renewed while they run.  num_workers=0 is allowed
    # there: a process that only enqueues.
    postgres_url: str | None = None  # a libpq URI or key=value string
    queue_name: str = "default"
    lease_timeout: float = 30.0

    def __post_init__(self) -> None:
        # Explicit base call: zero-argument super() breaks in slotted dataclasses.
        if self.num_workers == 0 and self.postgres_url is None:
            raise ValueError(
                "num_workers must be >= 1, got 0 (0, a process that only enqueues, "
                "is allowed only with postgres_url)"
            )
        if self.num_workers == 0 and self.postgres_url is not None:
            # A producer-only process: check the shared fields with one worker instead.
            vocabulary.Config.__post_init__(_with_one_worker(self))
        else:
            vocabulary.Config.__post_init__(self)
        self._check_postgres()
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
        if isinstance(self.status_history, bool) or not isinstance(self.status_history, int):
            raise TypeError(f"status_history must be an int, got {self.status_history!r}")
        if self.status_history < 0:
            raise ValueError(f"status_history must be >= 0, got {self.status_history}")
        if self.fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, got {self.fsync!r}")

    def _check_postgres(self) -> None:
        if self.postgres_url is not None:
            if not isinstance(self.postgres_url, str):
                raise TypeError(f"postgres_url must be a str, got {self.postgres_url!r}")
            if not self.postgres_url:
                raise ValueError("postgres_url must be a non-empty libpq URI or key=value string")
            if self.persist_path is not None:
                raise ValueError(
                    "persist_path and postgres_url are mutually exclusive: the JSON-lines "
                    "log belongs to one process, PostgreSQL is shared; choose one"
                )
        if not isinstance(self.queue_name, str):
            raise TypeError(f"queue_name must be a str, got {self.queue_name!r}")
        if not self.queue_name:
            raise ValueError("queue_name must be a non-empty str")
        if isinstance(self.lease_timeout, bool) or not isinstance(self.lease_timeout, int | float):
            raise TypeError(f"lease_timeout must be a float, got {self.lease_timeout!r}")
        if not self.lease_timeout > 0:
            raise ValueError(f"lease_timeout must be > 0 seconds, got {self.lease_timeout!r}")


def _with_one_worker(config: Config) -> vocabulary.Config:
    shared = {f.name: getattr(config, f.name) for f in fields(vocabulary.Config)}
    return vocabulary.Config(**{**shared, "num_workers": 1})
