"""The commands of ``mmdaemon <command>``, one module per responsibility; :mod:`mmdaemon.cli`
parses the command line and calls them, importing each module when its command runs.

- :mod:`.run` -- ``run`` and ``replay``: build a :class:`~mmdaemon.daemon.Service` and serve it;
- :mod:`.results` -- what a run leaves: the dry run's summary, its metrics, the report;
- :mod:`.operator` -- ``kill`` and ``rearm``: the instance on a state directory, or the desk;
- :mod:`.recordings` -- ``record``, ``sim`` and ``verify-book``: recordings made, served,
  checked;
- :mod:`.check_config` -- ``check-config``: a config reviewed without running it;
- :mod:`.usage` -- bad command-line input (exit 2), and the checks commands share.
"""
