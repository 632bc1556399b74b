"""Loading the configured strategy: a module:Class found through strategy.path, a name
registered as an entry point of an installed distribution, the built-ins; and every way it
can go wrong is a ConfigError naming the key. Real modules and dist-info on a temporary
import path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmdaemon.config import ConfigError
from mmdaemon.config_file import load_config
from mmdaemon.strategy.builtin import QuoterStrategy
from mmdaemon.strategy_loader import load_strategy
from tests.conftest import REPO
from tests.recorder import Recorder

STRATEGY = '''
from mmdaemon.strategy import Ladder

class Fixed:
    def __init__(self, params):
        if params.get("offset_ticks", 1) <= 0:
            raise ValueError("offset_ticks: expected > 0")
        self.params = params

    def quote(self, view):
        return None
'''


@pytest.fixture
def clean_modules() -> Iterator[None]:
    """The test modules are imported fresh each test and forgotten after."""
    before = set(sys.modules)
    path = list(sys.path)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]
    sys.path[:] = path


def config(tmp_path: Path, strategy: str) -> Path:
    text = (REPO / "config" / "dryrun.toml").read_text()
    text = text.replace('dir = "../state/dryrun"', f'dir = "{tmp_path / "state"}"')
    text = text.replace("../data/", f"{REPO}/data/")
    path = tmp_path / "mm.toml"
    path.write_text(strategy + "\n" + text)
    return path


def load(tmp_path: Path, strategy: str) -> object:
    cfg = load_config(config(tmp_path, strategy))
    return load_strategy(cfg, cfg.instrument.build(), Recorder())


def test_a_class_is_found_through_strategy_path_relative_to_the_config(
        tmp_path: Path, clean_modules: None) -> None:
    (tmp_path / "desk").mkdir()
    (tmp_path / "desk" / "mm_fixed.py").write_text(STRATEGY)
    built = load(tmp_path, '[strategy]\nclass = "mm_fixed:Fixed"\npath = ["desk"]\n'
                           '[strategy.params]\noffset_ticks = 3\n')
    assert type(built).__name__ == "Fixed"
    assert built.params["offset_ticks"] == 3  # type: ignore[attr-defined]
    with pytest.raises(TypeError):  # the table it was handed is read-only
        built.params["offset_ticks"] = 4  # type: ignore[attr-defined]


@pytest.mark.parametrize("strategy, message", [
    ('class = "no_such_mod:Fixed"', "strategy.class: cannot import 'no_such_mod'"),
    ('class = "mm_fixed:Nope"\npath = ["desk"]', "has no 'Nope'"),
    ('class = "mm_broken:X"\npath = ["desk"]', "importing 'mm_broken' raised NameError"),
    ('class = "mm_fixed:Fixed"\npath = ["desk"]\n[strategy.params]\noffset_ticks = -1',
     "strategy.params: mm_fixed:Fixed refused its parameters: ValueError: offset_ticks"),
    ('class = "mm_fixed:Ladder"\npath = ["desk"]',
     "strategy.params: mm_fixed:Ladder refused its parameters"),
    ('class = "mm_fixed:quoteless"\npath = ["desk"]', "with no quote(view) method"),
    ('class = "nobody_registered_this"', "no strategy named 'nobody_registered_this'"),
])
def test_a_strategy_that_cannot_be_built_is_a_config_error_naming_the_key(
        tmp_path: Path, clean_modules: None, strategy: str, message: str) -> None:
    (tmp_path / "desk").mkdir()
    (tmp_path / "desk" / "mm_fixed.py").write_text(
        STRATEGY + "\nquoteless = lambda params: object()\n")
    (tmp_path / "desk" / "mm_broken.py").write_text("undefined_name\n")
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "[strategy]\n" + strategy + "\n")
    assert message in str(err.value)


@pytest.mark.parametrize("strategy, message", [
    ('class = "a b"', "strategy.class: expected a built-in"),
    ('class = "pkg.mod:"', "strategy.class: expected 'package.module:Class'"),
    ('class = 3', "strategy.class: expected a built-in"),
    ('class = "x:Y"\nparams = 3', "strategy.params: expected a table"),
    ('error_hold_ms = -1', "strategy.error_hold_ms: expected an integer >= 0"),
    ('class = "glft"', "strategy.skew.mode: the built-in 'glft'"),  # dryrun.toml: linear
    ('class = "composition"\n[strategy.params]\na = 1', "strategy.params: the built-in"),
])
def test_the_strategy_keys_are_checked_when_the_config_loads(
        tmp_path: Path, strategy: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(config(tmp_path, "[strategy]\n" + strategy + "\n"))
    assert message in str(err.value)


def test_a_registered_entry_point_is_found_by_name(
        tmp_path: Path, clean_modules: None) -> None:
    site = tmp_path / "site"
    (site / "desk_pkg").mkdir(parents=True)
    (site / "desk_pkg" / "__init__.py").write_text(STRATEGY)
    info = site / "desk_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: desk-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[mmdaemon.strategies]\ndesk_fixed = desk_pkg:Fixed\n")
    sys.path.insert(0, str(site))
    log = Recorder()
    cfg = load_config(config(tmp_path, '[strategy]\nclass = "desk_fixed"\n'))
    assert type(load_strategy(cfg, cfg.instrument.build(), log)).__name__ == "Fixed"
    loaded = log.named("strategy_loaded")[0]
    assert loaded["builtin"] is False and loaded["file"].endswith("desk_pkg/__init__.py")
    with pytest.raises(ConfigError) as err:  # the error lists what is registered
        load(tmp_path, '[strategy]\nclass = "desk_fixd"\n')
    assert "desk_fixed" in str(err.value) and "glft" in str(err.value)


@pytest.mark.parametrize("name, skew", [("composition", "linear"),
                                        ("avellaneda_stoikov", "avellaneda_stoikov"),
                                        ("glft", "glft")])
def test_the_builtins_are_strategies_with_their_skew_model(
        tmp_path: Path, name: str, skew: str) -> None:
    text = (REPO / "config" / "dryrun.toml").read_text().replace('mode = "linear"', "")
    path = tmp_path / "mm.toml"
    path.write_text(f'[strategy]\nclass = "{name}"\n' + text.replace("../data/",
                                                                     f"{REPO}/data/"))
    cfg = load_config(path)
    built = load_strategy(cfg, cfg.instrument.build())
    assert isinstance(built, QuoterStrategy) and built.quoter.skew.params.mode == skew
