"""``python -m jobqueue``: the same as the ``jobqueue`` command."""

import sys

from jobqueue.lab.cli import main

sys.exit(main())
