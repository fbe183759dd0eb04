"""The durable job log: a :class:`~jobqueue.final.storage.Storage` on local disk.

Modules, in reading order: ``format`` (one record, one checksummed line),
``replay`` (lines added up into state), ``writer`` (appends and fsyncs),
``files`` (OS calls, lock, torn tails) and ``joblog``, which ties them together.
"""

from jobqueue.final.log.joblog import JobLog

__all__ = ["JobLog"]
