"""``python -m mmdaemon`` is the same as the ``mmdaemon`` console script."""

from mmdaemon.cli import main

raise SystemExit(main())
