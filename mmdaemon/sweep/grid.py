"""A sweep's plan: the GRID.toml file (a cartesian grid, or a seeded random search, over any
config keys) and each run's configuration, built and validated before any run starts.

The format (docs/sweep.md; an example in config/sweep-example.toml)::

    [grid]                                   # every combination, in file order,
    "strategy.spread.base_bps" = [0.5, 1.0]  # the last key changing fastest
    "strategy.skew.linear_coef_bps" = [0.5, 1.0, 2.0]

    [random]                                 # or: a seeded random search
    samples = 100
    seed = 7
    "strategy.spread.base_bps" = { uniform = [0.5, 3.0] }
    "strategy.skew.linear_coef_bps" = { log_uniform = [0.1, 10.0] }
    "strategy.sizing.base_size_lots" = { int = [50000, 200000] }
    "strategy.fair_value.mode" = { choice = ["mid", "weighted_mid"] }

Keys are the config files' dotted names, quoted (or written as nested TOML tables: the
same thing). A value is what the config file would hold at that key, so the config's own
validation judges it (its :class:`~mmdaemon.config.ConfigError` names the key).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmdaemon.config import Config, ConfigError, config_from_table
from mmdaemon.config_file import load_tables, resolve_paths

MAX_RUNS = 100_000
"""The most runs one sweep may plan: a grid past it is a typo (or a week of work)."""

KINDS = ("uniform", "log_uniform", "int", "choice")
"""How a random search draws a key's value: uniform and log_uniform over [low, high]
(floats, rounded to :data:`DIGITS` significant digits), int over [low, high] inclusive,
choice among the values listed, each with equal probability."""

DIGITS = 6
"""Significant digits of a drawn float: it reads well in the table and survives the CSV."""

_KEY = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")


class GridError(ValueError):
    """A grid file that cannot be used: the message names the file, the key and the fix."""


@dataclass(frozen=True, slots=True)
class Grid:
    """The runs of a sweep: ``keys`` the config keys varied (dotted names, file order) and
    ``points`` each run's values, in the order of ``keys``; ``description`` says how
    they were made, for people ("grid 3 x 2" or "random search, 100 samples, seed 7")."""

    keys: tuple[str, ...]
    points: tuple[tuple[Any, ...], ...]
    description: str

    def overrides(self, run: int) -> dict[str, Any]:
        """Run ``run``'s values by key."""
        return dict(zip(self.keys, self.points[run], strict=True))


def load_grid(path: Path) -> Grid:
    """The grid file at ``path``; :class:`GridError` when it cannot be read or used."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise GridError(f"{path}: cannot read the grid file: {exc}") from None
    return parse_grid(text, str(path))


def parse_grid(text: str, source: str) -> Grid:
    """The grid in TOML ``text`` (``source`` names it in messages)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - {"grid", "random"})
    if unknown:
        raise GridError(f"{source}: {unknown[0]!r}: expected only a [grid] table (values to "
                        f"combine) or a [random] table (a seeded random search); put the "
                        f"config keys inside it, quoted: \"strategy.spread.base_bps\" = [...]")
    if ("grid" in raw) == ("random" in raw):
        raise GridError(f"{source}: expected one [grid] table or one [random] table, got "
                        f"{'both' if raw else 'neither'}")
    if "grid" in raw:
        return _cartesian(_table(raw["grid"], "[grid]", source), source)
    return _random_search(_table(raw["random"], "[random]", source), source)


def _table(value: Any, name: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GridError(f"{source}: {name}: expected a table, got {value!r}")
    return value


def _leaves(table: Mapping[str, Any], source: str, is_leaf: Any,
            prefix: str = "") -> dict[str, Any]:
    """``table``'s entries by dotted key: nested tables are walked down to what ``is_leaf``
    accepts; a key given twice (quoted and nested) is refused."""
    out: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        found = (_leaves(value, source, is_leaf, f"{key}.")
                 if isinstance(value, dict) and not is_leaf(value) else {key: value})
        for k, v in found.items():
            if not _KEY.fullmatch(k):
                raise GridError(f"{source}: {k!r}: expected a config key of dotted names "
                                f"such as strategy.spread.base_bps")
            if k in out:
                raise GridError(f"{source}: {k}: given twice")
            out[k] = v
    return out


def _cartesian(table: dict[str, Any], source: str) -> Grid:
    params = _leaves(table, source, lambda _: False)
    if not params:
        raise GridError(f"{source}: [grid] is empty: give at least one key and its values, "
                        f"e.g. \"strategy.spread.base_bps\" = [0.5, 1.0, 2.0]")
    _disjoint(params, f"{source}: [grid]")
    for key, values in params.items():
        if not isinstance(values, list) or not values:
            raise GridError(f"{source}: [grid] {key}: expected a non-empty list of the "
                            f"values to try, got {values!r} (one value: [{values!r}])")
    runs = math.prod(len(v) for v in params.values())
    if runs > MAX_RUNS:
        raise GridError(f"{source}: [grid] makes {runs:,} runs, more than {MAX_RUNS:,}: use "
                        f"fewer values, or a [random] search with samples = N")
    shape = " x ".join(str(len(v)) for v in params.values())
    return Grid(tuple(params), tuple(itertools.product(*params.values())),
                f"grid {shape} = {runs:,} run{'' if runs == 1 else 's'}")


def _disjoint(keys: Collection[str], where: str) -> None:
    """Refuse a key inside another key's table (``strategy.spread`` and
    ``strategy.spread.base_bps``): one run would set both, and whichever is set last
    replaces the other, so a column would name a value the run did not use."""
    for outer in keys:
        for inner in keys:
            if inner.startswith(f"{outer}."):
                raise GridError(f"{where} {inner}: inside {outer}, also varied: one would "
                                f"replace the other; vary {inner} alone, or put its values "
                                f"in {outer}'s tables")


def _is_spec(value: dict[str, Any]) -> bool:
    return any(kind in value for kind in KINDS)


def _random_search(table: dict[str, Any], source: str) -> Grid:
    table = dict(table)
    samples, seed = table.pop("samples", None), table.pop("seed", None)
    if not isinstance(samples, int) or isinstance(samples, bool) or not 1 <= samples <= MAX_RUNS:
        raise GridError(f"{source}: [random] samples: expected the number of runs, an "
                        f"integer 1..{MAX_RUNS:,}, got {samples!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise GridError(f"{source}: [random] seed: expected an integer (the same seed draws "
                        f"the same runs), got {seed!r}")
    specs = _leaves(table, source, _is_spec)
    if not specs:
        raise GridError(f"{source}: [random] has no keys to draw: give e.g. "
                        f"\"strategy.spread.base_bps\" = {{ uniform = [0.5, 3.0] }}")
    _disjoint(specs, f"{source}: [random]")
    draws = [_drawer(key, spec, source) for key, spec in specs.items()]
    rng = random.Random(seed)
    points = tuple(tuple(draw(rng) for draw in draws) for _ in range(samples))
    return Grid(tuple(specs), points,
                f"random search, {samples:,} samples, seed {seed}")


def _drawer(key: str, spec: Any, source: str) -> Any:
    """A function drawing ``key``'s value from a ``random.Random``, per ``spec``."""
    where = f"{source}: [random] {key}"
    if not isinstance(spec, dict) or len(spec) != 1 or not _is_spec(spec):
        raise GridError(f"{where}: expected one of {{ uniform = [low, high] }}, "
                        f"{{ log_uniform = [low, high] }}, {{ int = [low, high] }} or "
                        f"{{ choice = [value, ...] }}, got {spec!r}")
    (kind, arg), = spec.items()
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise GridError(f"{where}: choice: expected a non-empty list of values, "
                            f"got {arg!r}")
        return lambda rng: rng.choice(arg)
    if kind == "int":
        if (not isinstance(arg, list) or len(arg) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in arg)
                or arg[0] > arg[1]):
            raise GridError(f"{where}: int: expected [low, high], integers with low <= high "
                            f"(both included), got {arg!r}")
        low, high = arg
        return lambda rng: rng.randint(low, high)
    if (not isinstance(arg, list) or len(arg) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool)
                       and math.isfinite(v) for v in arg)
            or not arg[0] < arg[1]):
        raise GridError(f"{where}: {kind}: expected [low, high], finite numbers with "
                        f"low < high, got {arg!r}")
    low, high = float(arg[0]), float(arg[1])
    if kind == "uniform":
        return lambda rng: _round(rng.uniform(low, high))
    if low <= 0:
        raise GridError(f"{where}: log_uniform: expected low > 0 (a log scale), got {low:g}")
    return lambda rng: _round(math.exp(rng.uniform(math.log(low), math.log(high))))


def _round(value: float) -> float:
    return float(f"{value:.{DIGITS}g}")


def base_table(path: Path) -> dict[str, Any]:
    """The parsed TOML of the config file at ``path`` (a run's config is it with the run's
    keys set); :class:`ConfigError` when it cannot be read."""
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def with_overrides(table: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the config ``table`` with each dotted key of ``overrides`` set (tables on
    the way created when the file left them out: their defaults apply)."""
    out = copy.deepcopy(dict(table))
    for key, value in overrides.items():
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts[:i + 1])}: a value in the config, not a "
                                  f"table, so it has no key {parts[i + 1]!r} (set {key})")
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return out


def run_config(table: Mapping[str, Any], overrides: Mapping[str, Any], path: Path) -> Config:
    """The configuration of one run: the base config file's ``table`` (read from ``path``:
    relative paths, the grid's included, resolve against its directory) with
    ``overrides`` set, validated as the file would be."""
    config = config_from_table(with_overrides(table, overrides))
    return load_tables(resolve_paths(config, path.resolve().parent))


def run_configs(grid: Grid, table: Mapping[str, Any], path: Path) -> list[Config]:
    """Every run's configuration, or a :class:`GridError` naming the first run whose
    values the config refuses, the values and the config's own message."""
    configs = []
    for run in range(len(grid.points)):
        overrides = grid.overrides(run)
        try:
            configs.append(run_config(table, overrides, path))
        except ConfigError as exc:
            raise GridError(f"run {run} ({describe(overrides)}) on {path}: {exc}") from None
    return configs


def describe(overrides: Mapping[str, Any]) -> str:
    """``key = value, ...`` for messages."""
    return ", ".join(f"{k} = {cell(v)}" for k, v in overrides.items())


def cell(value: Any) -> str:
    """A value as one CSV cell or table text: numbers as Python writes them (a float's
    shortest round-trip form), booleans as TOML does, strings as they are, None empty,
    lists and tables as TOML inline values."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_inline(v)}" for k, v in value.items()) + " }"
    return str(value)


def _inline(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else cell(value)
