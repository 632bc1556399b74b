"""Finding the configured strategy and building it (``[strategy] class``, ``params``, ``path``).

A built-in name builds :class:`~mmdaemon.strategy.builtin.QuoterStrategy` from the
``[strategy.*]`` tables. ``"package.module:Class"`` imports the module (the ``strategy.path``
directories first, then the installed packages) and takes the class; any other name is looked
up in the ``mmdaemon.strategies`` entry-point group of the installed distributions, so a
strategy packaged with::

    [project.entry-points."mmdaemon.strategies"]
    my_mm = "my_desk.mm:MyStrategy"

is named ``class = "my_mm"``. The class is called with one argument, the read-only
``[strategy.params]`` table. Whatever goes wrong (no module, an import that raises, no such
class, parameters it refuses, an object without ``quote``) is a
:class:`~mmdaemon.config.ConfigError` naming the key: the daemon does not start (exit 2), and
a reload (SIGHUP) keeps the running strategy. Any ``BaseException`` counts: a ``SystemExit``
out of a class built on a reload would stop the daemon with its orders still resting.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from mmdaemon.config import BUILTIN_STRATEGIES, Config, ConfigError
from mmdaemon.model import Instrument
from mmdaemon.strategy.api import Strategy
from mmdaemon.strategy.builtin import QuoterStrategy

ENTRY_POINT_GROUP = "mmdaemon.strategies"


def load_strategy(config: Config, instrument: Instrument, log: Any = None) -> Strategy:
    """The strategy ``config`` names, built; raises ConfigError naming the key. ``log``
    (when given) hears which one and where it came from (``strategy_loaded``)."""
    plugin = config.plugin
    if plugin.builtin:
        if log is not None:
            log.info("strategy_loaded", strategy=plugin.name, builtin=True,
                     skew=config.strategy.skew.mode)
        return QuoterStrategy(instrument, config.strategy, log)
    cls = _find(plugin.name, plugin.path)
    try:
        strategy = cls(MappingProxyType(dict(plugin.params)))
    except BaseException as exc:  # SystemExit too: on a SIGHUP it left our orders resting
        raise ConfigError(f"strategy.params: {plugin.name} refused its parameters: "
                          f"{type(exc).__name__}: {exc}") from exc
    if not callable(getattr(strategy, "quote", None)):
        raise ConfigError(f"strategy.class: {plugin.name} built a {type(strategy).__name__} "
                          f"with no quote(view) method")
    if log is not None:
        module = sys.modules.get(getattr(cls, "__module__", ""))
        log.info("strategy_loaded", strategy=plugin.name, builtin=False,
                 file=getattr(module, "__file__", None),
                 hooks=[h for h in ("on_trade", "on_top_of_book", "on_fill")
                        if callable(getattr(strategy, h, None))])
    return strategy  # type: ignore[no-any-return]


def _find(name: str, path: tuple[str, ...]) -> Any:
    """The class ``name`` means (see the module docstring)."""
    if ":" not in name:
        return _registered(name)
    module_name, _, attr = name.partition(":")
    for directory in reversed(path):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        where = f"strategy.path {list(path)} and " if path else ""
        raise ConfigError(f"strategy.class: cannot import {module_name!r}: {exc} (searched "
                          f"{where}the installed packages; add the directory holding it to "
                          f"strategy.path)") from exc
    except Exception as exc:
        raise ConfigError(f"strategy.class: importing {module_name!r} raised "
                          f"{type(exc).__name__}: {exc}") from exc
    cls = getattr(module, attr, None)
    if cls is None:
        raise ConfigError(f"strategy.class: module {module_name!r} ({module.__file__}) has no "
                          f"{attr!r}")
    if not callable(cls):
        raise ConfigError(f"strategy.class: {name} is a {type(cls).__name__}, not a class")
    return cls


def _registered(name: str) -> Any:
    """The class registered as ``name`` in the entry-point group."""
    found = entry_points(group=ENTRY_POINT_GROUP)
    for point in found:
        if point.name == name:
            try:
                return point.load()
            except Exception as exc:
                raise ConfigError(f"strategy.class: the registered strategy {name!r} "
                                  f"({point.value}) could not be loaded: "
                                  f"{type(exc).__name__}: {exc}") from exc
    known = sorted({*BUILTIN_STRATEGIES, *(p.name for p in found)})
    raise ConfigError(f"strategy.class: no strategy named {name!r}: expected one of "
                      f"{', '.join(known)}, or 'package.module:Class'")
