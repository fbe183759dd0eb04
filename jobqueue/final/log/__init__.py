"""The durable job log: a :class:`~jobqueue.final.storage.Storage` on local disk.

Modules, in reading order: ``format`` (one record, one checksummed line),
``replay`` (lines added up into state), ``files`` (OS calls, the file-safety
rules, the lock, torn tails), ``writer`` (owns the file: appends and fsyncs),
``compaction`` (the mirror and the atomic rewrite) and ``joblog``, which ties
them together.
"""

from jobqueue.final.log.joblog import JobLog

__all__ = ["JobLog"]
