"""The plumbing of ``make sanitize`` and ``make fuzz-c`` (fuzz/README.md), kept cheap.

``make sanitize`` itself (minutes) runs in CI after the suite; these check, in seconds, that
its parts do what it relies on: the preload makes the named build ``mmdaemon._speedups``
whatever ``sys.path`` says, the pytest plugin refuses to run the tests on a build without
AddressSanitizer, the fuzz target replays the corpus in the repository and catches a
compiled result that differs from the reference, and the libFuzzer harness (when clang and
its runtimes are installed) builds, replays corpus inputs and aborts on a finding.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mmdaemon import speedups
from mmdaemon.book import BookSide
from mmdaemon.model import BINANCE_USDM_BTCUSDT, Level
from mmdaemon.venues.binance import BinanceCodec, Market

REPO = Path(__file__).resolve().parents[2]
FUZZ = REPO / "fuzz"
CORPUS_C = FUZZ / "corpus-c"

pytestmark = pytest.mark.skipif(speedups.compiled is None,
                                reason="the compiled hot loops are not built here")


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a new interpreter started in the repository (the normal build first on
    sys.path), with fuzz/preload on PYTHONPATH and ``env`` added."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(FUZZ / "preload"), **env},
                          timeout=120)


def build_copy(tmp_path: Path) -> Path:
    """A copy of the normal build under another name: a build that is not the in-tree one."""
    assert speedups.compiled is not None
    source = Path(speedups.compiled.__file__)
    copy = tmp_path / "other" / source.name
    copy.parent.mkdir()
    shutil.copy(source, copy)
    return copy


def test_the_preload_loads_the_named_build_before_the_one_on_sys_path(tmp_path: Path) -> None:
    copy = build_copy(tmp_path)
    proc = python("from mmdaemon import speedups; print(speedups.compiled.__file__)",
                  MMDAEMON_SPEEDUPS_SO=str(copy))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(copy)


def test_the_preload_stops_the_process_when_the_named_build_cannot_load(tmp_path: Path) -> None:
    """Never the normal build in its place without a word."""
    missing = tmp_path / "_speedups.so"
    proc = python("print('ran')", MMDAEMON_SPEEDUPS_SO=str(missing))
    assert proc.returncode == 3 and proc.stdout == ""
    assert f"MMDAEMON_SPEEDUPS_SO={missing}: cannot load it" in proc.stderr


def test_the_sanitize_plugin_refuses_a_build_without_address_sanitizer(tmp_path: Path) -> None:
    """The tests of `make sanitize` never run on an uninstrumented build, even when it is the
    one named: the session stops before any test."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "sanitized_build", "-p", "no:cacheprovider",
         str(REPO / "tests" / "unit" / "test_book.py")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(FUZZ / "preload"),
             "MMDAEMON_SPEEDUPS_SO": str(build_copy(tmp_path))},
    )
    assert proc.returncode == 3, proc.stdout[-2000:]  # pytest's internal error, no test run
    assert "the ASan runtime is not mapped" in proc.stdout and " passed" not in proc.stdout


@pytest.fixture
def target(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """fuzz/speedups_target.py, imported here as the libFuzzer harness imports it."""
    monkeypatch.syspath_prepend(str(FUZZ))
    monkeypatch.delenv("MMDAEMON_SPEEDUPS_SO", raising=False)
    return importlib.import_module("speedups_target")


def test_the_fuzz_target_replays_the_corpus_in_the_repository_clean(
        target: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = sorted(CORPUS_C.iterdir())
    kinds = {path.read_bytes()[:1] for path in inputs}
    assert len(inputs) >= 10 and {b"B", b"{"} <= kinds  # book programs and frames
    assert target.main([str(CORPUS_C)]) == 0
    assert f"{len(inputs)} inputs clean" in capsys.readouterr().out


def test_the_fuzz_target_finds_a_book_side_that_differs_from_the_reference(
        target: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    class Shallow(BookSide):
        """Misses the deepest level of every read."""

        def top(self, n: int) -> list[Level]:
            return super().top(n)[:-1]

    program = (CORPUS_C / "book-small-region").read_bytes()
    target.one_input(program)
    monkeypatch.setattr(target, "BookSide", Shallow)
    with pytest.raises(AssertionError, match="!= reference"):
        target.one_input(program)


def test_the_fuzz_target_finds_a_codec_that_differs_from_the_reference(
        target: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    def other_grid(market: Market) -> BinanceCodec:
        compiled, speedups.compiled = speedups.compiled, None
        try:
            return BinanceCodec(BINANCE_USDM_BTCUSDT, market)  # 0.1 ticks, not 0.01
        finally:
            speedups.compiled = compiled

    frames = (CORPUS_C / "spot-snapshot-then-diffs").read_bytes()
    target.one_input(frames)
    monkeypatch.setattr(target.codec_oracle, "pure_codec", other_grid)
    with pytest.raises(AssertionError, match="!= python"):
        target.one_input(frames)


def clang_fuzzer() -> str | None:
    """Why the libFuzzer harness cannot be built here, or None when it can."""
    clang = shutil.which("clang-14")
    if clang is None:
        return "clang-14 is not installed (make fuzz-c or make sanitize installs it as root)"
    runtime = subprocess.run([clang, "-print-file-name=libclang_rt.fuzzer-x86_64.a"],
                             capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(runtime) or not os.path.exists(runtime):
        return "libclang-rt-14-dev (libFuzzer and the sanitizer runtimes) is not installed"
    return None


@pytest.mark.skipif(clang_fuzzer() is not None, reason=str(clang_fuzzer()))
def test_the_libfuzzer_harness_replays_corpus_inputs_and_aborts_on_a_finding(
        tmp_path: Path) -> None:
    build = tmp_path / "build"
    inputs = [CORPUS_C / "spot-snapshot-then-diffs", CORPUS_C / "book-small-region"]
    proc = subprocess.run(["bash", str(FUZZ / "fuzz-c.sh"), "0", *map(str, inputs)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "FUZZ_C_BUILD": str(build)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the harness and the instrumented extension, each a module of coverage counters
    loaded = re.search(r"Loaded 2 modules +\((\d+) inline 8-bit counters\)", proc.stderr)
    assert loaded and int(loaded[1]) > 1000, proc.stderr[-3000:]
    assert all(f"Executed {path}" in proc.stderr for path in inputs), proc.stderr[-3000:]

    # a target that raises on frames: the harness prints the exception, aborts, and libFuzzer
    # keeps the input (libFuzzer first runs an empty input, which must pass)
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "speedups_target.py").write_text(
        "def one_input(data: bytes) -> None:\n"
        "    if data.startswith(b'{'):\n"
        "        raise ValueError('planted finding')\n")
    env = {**os.environ, "MMDAEMON_FUZZ_PYTHON": sys.executable, "PYTHONMALLOC": "malloc",
           "PYTHONPATH": os.pathsep.join([str(planted), str(REPO)]),
           "ASAN_OPTIONS": "detect_leaks=0"}
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(inputs[0], corpus)
    proc = subprocess.run([str(build / "speedups_fuzzer"), "-runs=10",
                           f"-artifact_prefix={tmp_path}/", str(corpus)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0
    assert "ValueError: planted finding" in proc.stderr
    assert "speedups_fuzzer: finding" in proc.stderr
    crashes = list(tmp_path.glob("crash-*"))
    assert [path.read_bytes() for path in crashes] == [inputs[0].read_bytes()], proc.stderr[-2000:]
