"""The lab: everything that measures, reports or inspects the three stages.

Nothing here is part of a stage.  ``report`` runs the ``scenarios`` on each
stage and compares them; ``bench`` measures throughput, latency and memory;
``inspect_log`` reads a ``final`` log; ``cli`` is the ``jobqueue`` command.
What they share is written once: ``machine`` (what a figure was measured on)
and ``terminal`` (option checks, errors, the progress bar, SVG export).
"""
