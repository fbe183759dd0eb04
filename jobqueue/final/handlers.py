"""How a job finds its handler, and why a durable job must name it.

A function cannot be written to a log (no pickle: payloads and jobs are data),
so after a restart a job finds its handler by *name*: ``Job.handler`` names
one of ``Config.handlers``; a job that names none runs ``Config.handler``.
``enqueue_with_handler(job, fn)`` on a durable queue therefore accepts only a
registered ``fn`` (its name is written with the job), or the default handler.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from jobqueue.final.config import Config
from jobqueue.vocabulary import Handler, Job

__all__ = ["Handlers"]


class Handlers:
    """The handlers a queue knows: the default one and the named ones."""

    __slots__ = ("_config", "_names")

    def __init__(self, config: Config) -> None:
        self._config = config
        self._names: dict[Handler, str] = {}
        for name, handler in config.handlers.items():
            with contextlib.suppress(TypeError):  # unhashable: found by name only
                self._names.setdefault(handler, name)

    def resolve(self, job: Job, handler: Handler | None) -> tuple[Job, Handler]:
        """The job to store (naming its handler when it can) and the handler to run."""
        if not isinstance(job, Job):
            raise TypeError(f"job must be a Job, got {type(job).__name__}")
        if handler is None:
            return job, self.for_job(job)
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        try:
            name = self._names.get(handler)
        except TypeError:  # an unhashable callable cannot be a registered one
            name = None
        if name is not None:
            return replace(job, handler=name), handler
        if self._config.persist_path is not None and handler is not self._config.handler:
            raise ValueError(
                f"handler: job {job.id!r} would not survive a restart, because its handler "
                "has no name; register it in Config.handlers"
            )
        return job, handler

    def for_job(self, job: Job) -> Handler:
        """The handler ``job`` names, or the default; ``ValueError`` if there is none."""
        if job.handler is not None:
            try:
                return self._config.handlers[job.handler]
            except KeyError:
                raise ValueError(
                    f"handler: job {job.id!r} names {job.handler!r}, "
                    "which is not in Config.handlers"
                ) from None
        if self._config.handler is None:
            raise ValueError(
                f"handler: job {job.id!r} has none; pass one to enqueue_with_handler(), "
                "name one of Config.handlers in Job.handler, or set Config.handler"
            )
        return self._config.handler
