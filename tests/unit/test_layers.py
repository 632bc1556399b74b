"""The package's layers (docs/architecture.md): every module is in one, imports only its
own layer and those below, the core imports nothing that does I/O or reads a clock, and no
import circle exists (type-checking imports count: a circle there is a circle in the
design). A module added without a layer fails here until it is given one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mmdaemon"

CORE, SHELL, APP = 0, 1, 2
LAYER_NAMES = {CORE: "core", SHELL: "shell", APP: "application"}

# module (dotted, without "mmdaemon.") or package prefix ending in "." -> layer
LAYERS: dict[str, int] = {
    # core: values, codecs, book, quoting, risk rules, the engine; pure and synchronous
    "model": CORE, "book": CORE, "market": CORE, "markouts": CORE, "snapshot": CORE,
    "records": CORE, "engine": CORE, "engine_figures": CORE, "pace": CORE, "backoff": CORE,
    "hosts": CORE, "latency_histogram": CORE,
    "speedups": CORE, "config": CORE, "venues.": CORE, "quoting.": CORE, "reference": CORE,
    "analytics": CORE, "report_series": CORE, "sharpe": CORE, "market_hours": CORE,
    "metric_definitions": CORE, "config_exchange": CORE, "instrument_config": CORE,
    "orders.": CORE, "risk.state": CORE, "risk.rules": CORE, "risk.breakers": CORE,
    "risk.unsendable": CORE, "risk.firm": CORE, "risk.ladder": CORE, "exchange.base": CORE,
    "exchange.fill_model": CORE, "exchange.queue": CORE, "exchange.latency": CORE,
    "risk": CORE, "exchange": CORE, "feed": SHELL, "sim": SHELL,  # the packages themselves
    "orders": CORE, "venues": CORE, "quoting": CORE, "": CORE,  # mmdaemon/__init__.py
    "engine_ports": CORE, "strategy": CORE, "strategy.": CORE, "status": CORE,
    # shells: I/O and time around the core, one responsibility each
    "clock": SHELL, "aio": SHELL, "feed.": SHELL, "exchange.paper": SHELL,
    "exchange.binance_gateway": SHELL, "exchange.usdm_gateway": SHELL,
    "exchange.credentials": SHELL, "exchange.binance_requests": SHELL,
    "exchange.binance_settings": SHELL, "journal": SHELL, "latch": SHELL, "statedir": SHELL,
    "log": SHELL, "notify": SHELL, "readiness": SHELL, "startup": SHELL, "metrics": SHELL,
    "progress": SHELL, "early_signals": SHELL, "risk.redis_bus": SHELL, "sim.": SHELL,
    "sim.futures_accounts": SHELL, "sim.futures_wire": SHELL, "sim.futures_matching": SHELL,
    "sim.futures_protocol": SHELL, "sim.usdm": SHELL, "venue_rules": SHELL,
    "orderlog": SHELL, "provenance": SHELL, "feed_task": SHELL, "order_sender": SHELL,
    "journal_reader": SHELL, "control": SHELL, "wire_latency": SHELL,
    "config_file": SHELL, "exchange.latency_file": SHELL,
    # application: wiring the parts, the service, commands, reports
    "wiring": APP, "defaults": APP, "daemon": APP, "cli": APP, "__main__": APP, "report": APP,
    "plots": APP, "report_sections": APP, "pages": APP, "sweep": APP, "sweep.": APP,
    "commands": APP, "commands.": APP, "commands.usdm_sim": APP,
    "crosscheck": APP, "crosscheck.": APP,
    "config_check": APP, "verify": APP, "strategy_loader": APP,
}
# what the core may not import: I/O, event loops, processes, clocks
IMPURE = {"asyncio", "sqlite3", "socket", "ssl", "websockets", "aiohttp", "redis", "signal",
          "subprocess", "threading", "time", "uvloop", "structlog", "os", "io", "shutil",
          "tempfile", "gzip", "csv", "importlib"}
# the core's one reading of its surroundings, at import: MMDAEMON_PURE_PYTHON turns the
# compiled twins off (os.environ)
IMPURE_ALLOWED = {"speedups": {"os", "importlib"}}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def layer_of(name: str) -> int | None:
    if name in LAYERS:
        return LAYERS[name]
    prefixes = [p for p in LAYERS if p.endswith(".") and name.startswith(p)]
    return LAYERS[max(prefixes, key=len)] if prefixes else None


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str | None:
    """The dotted module an ``ImportFrom`` names, relative ones resolved against ``name``
    (the importing module, without "mmdaemon."; a package's ``__init__`` is the package)."""
    if node.level == 0:
        return node.module
    here = ["mmdaemon", *[p for p in name.split(".") if p]]
    if not is_package:
        here = here[:-1]  # a module's relative imports start from its package
    base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
    return ".".join([*base, node.module] if node.module else base)


def _dynamic(node: ast.Call) -> str | None:
    """``importlib.import_module("mmdaemon.x")`` or ``__import__("mmdaemon.x")``: the name."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if called in ("import_module", "__import__") and node.args and isinstance(
            node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def imports_of(path: Path, name: str | None = None) -> tuple[set[str], set[str]]:
    """(mmdaemon modules imported, without the prefix; top-level stdlib/third-party names).

    Every way a module can reach another counts: ``import a.b as c``, ``from a import b``
    where ``b`` is a module (``from mmdaemon.risk import redis_bus`` imports the shell
    ``risk.redis_bus``, not just the package), relative imports (``from ..daemon import
    Service``) and ``importlib.import_module`` with a literal name. ``name``: the module's
    dotted name (default: from ``path``, which must then lie in the package)."""
    if name is None:
        name = module_name(path)
    is_package = path.name == "__init__.py"
    ours, others = set(), set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, name, is_package)
            if not module:
                continue
            names = [module]
            if module == "mmdaemon" or module.startswith("mmdaemon."):
                # `from mmdaemon.pkg import mod` imports the module mod (a name in
                # pkg/__init__ resolves to pkg itself below)
                names += [f"{module}.{alias.name}" for alias in node.names
                          if f"{module}.{alias.name}".removeprefix("mmdaemon.") in MODULES]
        elif isinstance(node, ast.Call) and (target := _dynamic(node)) is not None:
            names = [target]
        else:
            continue
        for each in names:
            if each == "mmdaemon" or each.startswith("mmdaemon."):
                ours.add(each.removeprefix("mmdaemon").removeprefix("."))
            else:
                others.add(each.split(".")[0])
    return ours, others


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: imports_of(path, name) for name, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(name for name in MODULES if layer_of(name) is None)
    assert not unplaced, f"give these a layer in tests/test_layers.py: {unplaced}"


def test_no_module_imports_a_higher_layer() -> None:
    upward = []
    for name, (ours, _) in GRAPH.items():
        mine = layer_of(name)
        for target in ours:
            theirs = layer_of(target) if target in MODULES else layer_of(target.rsplit(".", 1)[0])
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{name} ({LAYER_NAMES[mine]}) -> {target} "
                              f"({LAYER_NAMES[theirs]})")
    assert not upward, "\n".join(upward)


def test_the_core_does_no_io_and_reads_no_clock() -> None:
    impure = [f"{name} imports {sorted(bad)}"
              for name, (_, others) in GRAPH.items()
              if layer_of(name) == CORE
              and (bad := others & IMPURE - IMPURE_ALLOWED.get(name, set()))]
    assert not impure, "\n".join(impure)


def test_no_import_circle() -> None:
    edges = {name: {t if t in MODULES else t.rsplit(".", 1)[0] for t in ours} & MODULES.keys()
             for name, (ours, _) in GRAPH.items()}
    for package in [n for n in MODULES if MODULES[n].name == "__init__.py"]:
        edges[package] = set()  # a package's face re-exports its children: not a dependency
    seen: dict[str, int] = {}  # 1 on the current path, 2 done
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(edges[node]):
            if seen.get(nxt) == 1:
                circles.append([*path[path.index(nxt):], nxt])
            elif nxt not in seen:
                visit(nxt, [*path, nxt])
        seen[node] = 2

    for start in sorted(edges):
        if start not in seen:
            visit(start, [start])
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


MAX_LINES = 820
"""The issue's "no Python module over ~800 lines": past it, a module holds more than one
responsibility to read at once."""
@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_is_small_enough_to_read(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, (f"{MODULES[name].relative_to(PACKAGE.parent)} has {lines} "
                                f"lines: split it by responsibility")


@pytest.mark.parametrize(("source", "module", "target"), [
    ("from ..daemon import Service\n", "venues.fake", "daemon"),
    ("from . import daemon\n", "fake", "daemon"),
    ("from .feed_task import FeedTask\n", "fake", "feed_task"),
    ("from mmdaemon.risk import redis_bus\n", "fake", "risk.redis_bus"),
    ("from mmdaemon.exchange import paper\n", "orders.fake", "exchange.paper"),
    ("import importlib\nimportlib.import_module('mmdaemon.daemon')\n", "fake", "daemon"),
])
def test_an_import_is_seen_however_it_is_spelled(tmp_path: Path, source: str, module: str,
                                                 target: str) -> None:
    """A relative import, a module imported from its package and ``importlib.import_module``
    reach a module as surely as ``import mmdaemon.x``: the layer and circle checks must see
    each (a core module written so would import a shell or the daemon unseen)."""
    path = tmp_path / "fake.py"
    path.write_text(source)
    ours, _ = imports_of(path, module)
    assert target in ours
    assert layer_of(target) in (SHELL, APP)  # each one above the core
