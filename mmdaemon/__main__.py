"""``python -m mmdaemon`` is the same as the ``mmdaemon`` console script.

The operator's signals are caught before anything else is imported: ``mmdaemond`` (the
launcher the systemd unit runs) execs this module with them blocked, and a kill switch
flipped during start-up must be latched, not end the process (see early_signals).
"""

from mmdaemon import early_signals

early_signals.install()

from mmdaemon.cli import main  # noqa: E402  (after the signals, on purpose)

raise SystemExit(main())
