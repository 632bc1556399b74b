"""The sweep's plan (GRID.toml: a cartesian grid or a seeded random search over config keys,
each run's config built and validated before any run), its rows (flattened summaries) and
its choices (objective, Pareto front)."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import pytest

from mmdaemon.commands.usage import UsageError
from mmdaemon.config import ConfigError
from mmdaemon.sweep.command import Progress
from mmdaemon.sweep.grid import GridError, base_table, cell, parse_grid, run_configs, with_overrides
from mmdaemon.sweep.objective import Objective, Requirement
from mmdaemon.sweep.page import pareto
from mmdaemon.sweep.runner import flatten
from tests.helpers import DRYRUN

GRID = """
[grid]
"strategy.spread.base_bps" = [0.5, 1.0, 2.0]
strategy.skew.linear_coef_bps = [0.25, 4.0]
"""

RANDOM = """
[random]
samples = 50
seed = 7
"strategy.spread.base_bps" = { uniform = [0.5, 3.0] }
"strategy.skew.linear_coef_bps" = { log_uniform = [0.1, 10.0] }
"strategy.sizing.base_size_lots" = { int = [50000, 200000] }
"strategy.fair_value.mode" = { choice = ["mid", "weighted_mid"] }
"""


def test_grid_is_every_combination_in_file_order_last_key_fastest() -> None:
    grid = parse_grid(GRID, "g.toml")
    # quoted dotted keys and nested TOML tables name config keys the same way
    assert grid.keys == ("strategy.spread.base_bps", "strategy.skew.linear_coef_bps")
    assert grid.points == ((0.5, 0.25), (0.5, 4.0), (1.0, 0.25), (1.0, 4.0), (2.0, 0.25),
                           (2.0, 4.0))
    assert grid.description == "grid 3 x 2 = 6 runs"
    assert grid.overrides(3) == {"strategy.spread.base_bps": 1.0,
                                 "strategy.skew.linear_coef_bps": 4.0}


def test_random_search_draws_the_same_runs_from_the_same_seed_within_the_ranges() -> None:
    grid = parse_grid(RANDOM, "r.toml")
    assert parse_grid(RANDOM, "r.toml") == grid
    other = parse_grid(RANDOM.replace("seed = 7", "seed = 8"), "r.toml")
    assert other.points != grid.points
    assert len(grid.points) == 50 and grid.description == "random search, 50 samples, seed 7"
    base, coef, size, mode = zip(*grid.points, strict=True)
    assert all(0.5 <= v <= 3.0 for v in base)
    assert all(0.1 <= v <= 10.0 for v in coef)
    # log-uniform: as many draws below the geometric middle (1.0) as above, roughly
    assert 10 <= sum(v < 1.0 for v in coef) <= 40
    assert all(isinstance(v, int) and 50000 <= v <= 200000 for v in size)
    assert set(mode) == {"mid", "weighted_mid"}
    # floats rounded to 6 significant digits: they survive the CSV as written
    assert all(float(f"{v:.6g}") == v for v in base + coef)


@pytest.mark.parametrize(("text", "says"), [
    ("", "expected one [grid] table or one [random] table, got neither"),
    ("[grid]\n", "[grid] is empty"),
    ('[grid]\n"strategy.spread.base_bps" = []\n', "expected a non-empty list"),
    ('[grid]\n"strategy.spread.base_bps" = 1.0\n', "(one value: [1.0])"),
    ('[grid]\n"a.b" = [1]\n[random]\nsamples = 1\nseed = 1\n', "got both"),
    ('[grids]\n"a.b" = [1]\n', "'grids': expected only a [grid] table"),
    ('[grid]\n"strategy spread" = [1]\n', "expected a config key of dotted names"),
    ('[grid]\n"strategy.spread.base_bps" = [1]\nstrategy.spread.base_bps = [2]\n',
     "strategy.spread.base_bps: given twice"),
    ('[grid]\n"a" = [1, 2]\n"b" = [' + ", ".join(map(str, range(1000))) + ']\n"c" = ['
     + ", ".join(map(str, range(101))) + "]\n", "makes 202,000 runs, more than 100,000"),
    ("[random]\nseed = 1\n", "samples: expected the number of runs"),
    ("[random]\nsamples = 0\nseed = 1\n", "got 0"),
    ("[random]\nsamples = 3\n", "seed: expected an integer"),
    ("[random]\nsamples = 3\nseed = 1\n", "has no keys to draw"),
    ('[random]\nsamples = 3\nseed = 1\n"a.b" = { uniform = [2.0, 1.0] }\n', "low < high"),
    ('[random]\nsamples = 3\nseed = 1\n"a.b" = { log_uniform = [0.0, 1.0] }\n',
     "log_uniform: expected low > 0"),
    ('[random]\nsamples = 3\nseed = 1\n"a.b" = { int = [1.5, 3] }\n', "integers with low"),
    ('[random]\nsamples = 3\nseed = 1\n"a.b" = { choice = [] }\n', "non-empty list"),
    ('[random]\nsamples = 3\nseed = 1\n"a.b" = { uniform = [0, 1], int = [0, 1] }\n',
     "expected one of"),
    ('[random]\nsamples = 3\nseed = 1\n"a.b" = [1, 2]\n', "expected one of"),
    ("[grid\n", "not valid TOML"),
    # a key inside another key's table: whichever is set last would replace the other
    ('[grid]\n"a.b.c" = [1, 2]\n"a.b" = [{ d = 1 }]\n', "[grid] a.b.c: inside a.b, also varied"),
    ('[random]\nsamples = 3\nseed = 1\n"a" = { choice = [{ b = 1 }] }\n'
     '"a.b" = { int = [1, 3] }\n', "[random] a.b: inside a, also varied"),
])
def test_an_unusable_grid_is_refused_naming_the_file_and_what_to_write(text: str,
                                                                     says: str) -> None:
    with pytest.raises(GridError) as caught:
        parse_grid(text, "g.toml")
    assert str(caught.value).startswith("g.toml: ") and says in str(caught.value)


def test_each_run_config_is_the_base_with_the_runs_keys_set() -> None:
    grid = parse_grid(GRID, "g.toml")
    configs = run_configs(grid, base_table(DRYRUN), DRYRUN)
    assert [(c.strategy.spread.base_bps, c.strategy.skew.linear_coef_bps) for c in configs] \
        == list(grid.points)
    # everything else as the base file says, its relative paths resolved against its folder
    assert configs[0].feed.recordings[0] == str(
        (DRYRUN.parent / "../data/binance-spot-btcusdt/btcusdt_20240808.gz").resolve())
    assert configs[0].risk.max_order_lots == 1_000_000


def test_an_unknown_key_is_refused_with_the_configs_own_message_and_the_run() -> None:
    grid = parse_grid('[grid]\n"strategy.spread.base_bsp" = [1.0]\n', "g.toml")
    with pytest.raises(GridError) as caught:
        run_configs(grid, base_table(DRYRUN), DRYRUN)
    text = str(caught.value)
    assert text.startswith("run 0 (strategy.spread.base_bsp = 1.0) on ")
    assert "strategy.spread.base_bsp: unknown key (expected one of" in text


def test_a_bad_value_is_refused_naming_the_first_run_that_has_it() -> None:
    grid = parse_grid('[grid]\n"exchange.queue_model" = ["power", "lifo"]\n'
                      '"risk.max_open_orders" = [2, 0]\n', "g.toml")
    with pytest.raises(GridError) as caught:
        run_configs(grid, base_table(DRYRUN), DRYRUN)
    # run 0 is valid; run 1 allows 0 open orders, the first bad value in grid order
    assert str(caught.value) == (
        f"run 1 (exchange.queue_model = power, risk.max_open_orders = 0) on {DRYRUN}: "
        f"risk.max_open_orders: expected a positive number, got 0")


def test_a_key_below_a_value_is_refused_naming_the_value() -> None:
    with pytest.raises(ConfigError, match=r"^risk.max_loss: a value in the config, not a "
                                          r"table, so it has no key 'cap' \(set "
                                          r"risk.max_loss.cap\)"):
        with_overrides(base_table(DRYRUN), {"risk.max_loss.cap": 1})


def test_overrides_leave_the_base_table_unchanged_and_create_missing_tables() -> None:
    base = {"risk": {"max_loss": "50"}}
    out = with_overrides(base, {"strategy.ladder.levels": 2, "risk.max_loss": "20"})
    assert out == {"risk": {"max_loss": "20"}, "strategy": {"ladder": {"levels": 2}}}
    assert base == {"risk": {"max_loss": "50"}}


def test_cells_are_written_as_toml_would_and_floats_round_trip() -> None:
    assert [cell(v) for v in (None, True, 0.1, 3, "mid", [1.0, 5.0], {"a": "x"})] == [
        "", "true", "0.1", "3", "mid", "[1.0, 5.0]", '{ a = "x" }']
    value = 0.1 + 0.2
    assert float(cell(value)) == value


def test_a_row_is_the_summary_and_metrics_flat_without_wall_clock_or_provenance() -> None:
    summary = {"frames": 10, "wall_s": 0.5, "frames_per_s": 20, "total_pnl": 1.5,
               "version": "0.1.0", "config": {"path": "/x.toml", "values": {"a": 1}},
               "feed": {"recordings": [{"path": "/tmp/w1/r.gz", "bytes": 3}]},
               "unsendable": {"min_size": 0, "order_rate": 3}, "warnings": ["a", "b"],
               "markouts": [{"horizon_s": 1.0, "markout_bps": -1.0},
                            {"horizon_s": 0.5, "markout_bps": 2.0}],
               "metrics": {"total_pnl": 1.5, "sharpe": None,
                           "by_day": [{"date": "2024-08-08", "pnl": 1.0}],
                           "markouts": [{"horizon_s": 1.0, "markout_bps": -1.0},
                                        {"horizon_s": 0.5, "markout_bps": 2.0}]}}
    assert flatten(summary) == {
        "frames": 10, "total_pnl": 1.5, "unsendable.min_size": 0, "unsendable.order_rate": 3,
        "warnings": "a; b", "markouts.1s.markout_bps": -1.0, "markouts.0.5s.markout_bps": 2.0,
        "sharpe": None, "by_day.2024-08-08.pnl": 1.0}


def test_the_objective_ranks_runs_that_have_its_figure_ties_by_run_number() -> None:
    rows = [{"run": 0, "error": "", "pnl": 1.0}, {"run": 1, "error": "boom"},
            {"run": 2, "error": "", "pnl": 3.0}, {"run": 3, "error": "", "pnl": 1.0},
            {"run": 4, "error": "", "pnl": math.nan},
            {"run": 5, "error": "no quote was decided", "pnl": 9.0}]  # failed, with figures
    assert [r["run"] for r in Objective.parse("pnl").best(rows, 3)] == [2, 0, 3]
    assert [r["run"] for r in Objective.parse("pnl:min").best(rows, 2)] == [0, 3]
    assert str(Objective.parse("pnl:min")) == "pnl (smallest best)"
    for bad in ("", ":max", "pnl:up"):
        with pytest.raises(UsageError, match=r"--objective: expected a column of runs\.csv"):
            Objective.parse(bad)


def test_a_requirement_keeps_runs_that_miss_it_out_of_the_best() -> None:
    rows = [{"run": 0, "error": "", "pnl": 0.0, "fills": 0},
            {"run": 1, "error": "", "pnl": -1.0, "fills": 80},
            {"run": 2, "error": "", "pnl": -0.5, "fills": 40},
            {"run": 3, "error": "", "pnl": 2.0}]  # no fills figure: not eligible
    objective = Objective.parse("pnl", ["fills>=40"])
    assert [r["run"] for r in objective.best(rows, 5)] == [2, 1]
    assert [r["run"] for r in Objective.parse("pnl", ["fills<=40"]).best(rows, 5)] == [0, 2]
    assert str(objective) == "pnl (largest best) among runs with fills >= 40"
    assert objective.columns == ["pnl", "fills"]
    for bad in ("fills", "fills>=", ">=3", "fills>=nan", "fills=>3", "fills>=x"):
        with pytest.raises(UsageError, match=r"--require: expected a column of runs\.csv"):
            Requirement.parse(bad)
    # what an unquoted quote_uptime>=0.9 leaves of itself after the shell's redirection
    with pytest.raises(UsageError, match="quote it, the shell took '>' for a redirection"):
        Requirement.parse("quote_uptime")


def test_the_pareto_front_keeps_runs_no_other_beats_on_both_risk_and_reward() -> None:
    points = [(1.0, 1.0), (2.0, 3.0), (2.0, 2.0), (3.0, 3.0), (0.5, 0.0), (2.0, 3.0),
              (4.0, 5.0)]
    # (2, 2) has more risk than (1, 1)... and more reward: efficient only if nothing with
    # risk <= 2 has reward >= 2 and better: (2, 3) does. (3, 3): (2, 3) same reward, less risk
    assert pareto(points) == {0, 1, 4, 5, 6}
    assert pareto([]) == set()


def test_the_example_grid_shipped_plans_100_valid_runs() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "sweep-example.toml"
    grid = parse_grid(example.read_text(), str(example))
    assert len(run_configs(grid, base_table(DRYRUN), DRYRUN)) == 100


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_line_on_a_terminal_is_rewritten_in_place_with_rate_and_time_left(
        ) -> None:
    stream = _Terminal()
    progress = Progress(4, "in-sample", stream)
    progress.advance()
    progress.advance()
    progress.close()
    text = stream.getvalue()
    lines = text.split("\r\x1b[K")[1:]
    assert len(lines) == 2 and text.endswith("\n")
    assert lines[0].startswith("sweep in-sample: 1/4 runs  ")
    assert lines[1].startswith("sweep in-sample: 2/4 runs  ")
    assert re.search(r"[0-9.,]+ runs/s  [0-9,]+ s  ([0-9,]+|--) s left", lines[1])


def test_progress_off_a_terminal_is_one_line_at_the_end_of_a_short_sweep() -> None:
    stream = io.StringIO()
    progress = Progress(3, "holdout", stream)
    for _ in range(3):
        progress.advance()
    progress.close()
    (line,) = stream.getvalue().splitlines()  # none of the rewriting escapes
    assert line.startswith("sweep holdout: 3/3 runs  ")
