# Two commands matter: `make demo` (set up + run the main job) and `make test` (set up + test).
#
# Every install is exactly the one in uv.lock (versions and sha256 hashes of every runtime
# and dev dependency, and the setuptools that builds mmdaemon itself), made by uv, whose own
# version and hashes are in uv-bootstrap.txt. `make lock` refreshes the lock to the newest
# releases pyproject.toml allows; `make test-latest` tries those without touching the lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
UV := $(TOOLS)/bin/uv
STAMP := $(VENV)/.installed
SYSDEPS := $(VENV)/.system-deps
LATEST := .venv-latest
# the machine's Python only: uv must not fetch an interpreter of its own
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# the tests that build and install the wheel run this uv, offline, from its cache
export MMDAEMON_UV := $(abspath $(UV))

.PHONY: demo test test-systemd rules-test lint lock relock lock-check test-latest dist bench bench-day \
	clean sanitize fuzz-c \
	crosscheck

$(UV): uv-bootstrap.txt
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --require-hashes -r uv-bootstrap.txt
	touch $(UV)

# --locked: stop, rather than resolve anew, when uv.lock does not match pyproject.toml
$(STAMP): pyproject.toml uv.lock setup.py mmdaemon/_launcher.c $(UV)
	$(UV) sync --locked --python $(PYTHON)
	# the launcher the systemd unit runs, linked into bin/ as the runbook does on servers
	launcher="$$($(BIN)/mmdaemon --launcher-path)" && ln -sf "$$launcher" $(BIN)/mmdaemond \
		|| echo "no mmdaemond launcher: tests of start-up signals will skip"
	touch $(STAMP)

# The main job: a dry run of the daemon on the bundled real Binance recording (paper
# exchange), printing its summary and writing its report; then the book check against the
# venue's own tickers.
RECORDING := data/binance-spot-btcusdt/btcusdt_20240808.gz data/binance-spot-btcusdt/btcusdt_20240809.gz

demo: $(STAMP)
	$(BIN)/mmdaemon verify-book $(RECORDING)
	$(BIN)/mmdaemon replay $(RECORDING) --config config/dryrun.toml --report report

# The paper exchange's fills against hftbacktest's (a dev dependency): the dry run's order
# log replayed through it on the same recording and clock, fills compared one to one
# (README, "The paper exchange"); the USD-M recording when ../shared holds it.
USDM_RECORDING := ../shared/data/binance-usdm-btcusdt/btcusdt_20240808.gz

crosscheck: $(STAMP)
	$(BIN)/mmdaemon crosscheck --config config/dryrun.toml
	@if [ -f $(USDM_RECORDING) ]; then $(BIN)/mmdaemon crosscheck --config config/dryrun-usdm.toml; \
	else echo "no $(USDM_RECORDING): the USD-M cross-check skipped"; fi

# Optional system tools some tests use (headless Chromium for the report, promtool for the
# metrics endpoint, redis-server for the firm risk bus): installed once when this runs as
# root with apt; elsewhere those tests skip with a reason. The tests start their own
# redis-server on a free loopback port; a system one the package may start is not used.
$(SYSDEPS): | $(STAMP)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium prometheus systemd redis-server >/dev/null) \
		|| echo "apt: chromium/promtool/systemd-analyze/redis-server missing; their tests will skip"; \
	else echo "not root with apt: chromium/promtool/redis tests skip unless already installed"; fi
	touch $(SYSDEPS)

test: lock-check $(STAMP) $(SYSDEPS) lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The compiled hot loops (mmdaemon/_speedups.c) under AddressSanitizer + UBSan: the codec, book
# and speedups tests and every fuzz corpus through an instrumented build (build/sanitize/; the
# in-tree one is left alone). Installs clang with apt when root, as above; see fuzz/README.md.
sanitize: $(STAMP)
	bash fuzz/sanitize.sh

# Coverage-guided fuzzing of mmdaemon/_speedups.c (libFuzzer + ASan + UBSan) for FUZZ_SECONDS
# (0: replay fuzz/corpus-c and stop); FUZZ_ARGS go to libFuzzer (e.g. -jobs=2 -workers=2).
FUZZ_SECONDS ?= 60
fuzz-c: $(STAMP)
	bash fuzz/fuzz-c.sh $(FUZZ_SECONDS) $(FUZZ_ARGS)

# The unit (deploy/mmdaemon@.service) under a real systemd: systemd-nspawn boots a Debian 12
# tree (debootstrap, cached in .cache/systemd/ with the wheelhouse of the locked runtime
# dependencies: 1-3 min and the network the first time) with systemd as PID 1, mmdaemon is
# installed by the runbook's install steps and each test drives an instance against
# `mmdaemon sim` on loopback (tests/systemd/). Needs root: elsewhere the tests skip with the
# reason.
test-systemd: $(STAMP)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& ! { command -v debootstrap && command -v systemd-nspawn; } >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			debootstrap systemd-container >/dev/null; fi
	$(BIN)/python -m tests.systemd.machine prepare
	$(BIN)/python -m pytest -q -m systemd tests/systemd

# Fails when pyproject.toml asks for something uv.lock does not hold (or no longer asks for
# something it does): run `make lock` and commit both files.
lock-check: $(UV)
	@$(UV) lock --check || { echo "uv.lock does not match pyproject.toml: run 'make relock' \
	(keep every other pin) or 'make lock' (newest releases), test, and commit uv.lock"; exit 1; }

# The Prometheus rules' own unit tests (package prometheus: promtool), after editing them
rules-test:
	promtool check rules deploy/prometheus/mmdaemon.rules.yml
	promtool test rules deploy/prometheus/mmdaemon.rules.test.yml

lint: $(STAMP)
	$(BIN)/ruff check mmdaemon tests bench examples
	$(BIN)/mypy

lock: $(UV)
	$(UV) lock --upgrade

# after an edit of pyproject.toml (a dependency, a range, the version): lock what changed only
relock: $(UV)
	$(UV) lock

# Not part of CI: the suite against the newest releases pyproject.toml allows, in a venv of
# its own, so breakage on the way is seen before `make lock` takes it in.
test-latest: $(UV)
	rm -rf $(LATEST)
	$(UV) venv --quiet --python $(PYTHON) $(LATEST)
	VIRTUAL_ENV=$(abspath $(LATEST)) $(UV) pip install --quiet --upgrade --refresh -e . --group dev
	$(LATEST)/bin/ruff check mmdaemon tests bench
	$(LATEST)/bin/mypy
	$(LATEST)/bin/python -m pytest -q

# A release for hosts without uv (deploy/README.md): the sdist, the wheel built from it with
# the locked setuptools, and the locked runtime dependencies with their hashes, for
# `pip install --require-hashes -r requirements.txt` then `pip install --no-deps <wheel>`.
DIST ?= dist
dist: $(UV)
	rm -f $(DIST)/mmdaemon-*  # one version in it: the runbook installs dist/mmdaemon-$$V-*.whl
	$(UV) build --out-dir $(DIST)
	$(UV) export --frozen --no-dev --no-emit-project --format requirements-txt \
		--output-file $(DIST)/requirements.txt

# Every headline figure (issue #9) as one JSON object and a table; the single benchmarks
# under bench/ run on their own too (e.g. `.venv/bin/python bench/latency.py --help`).
# The anchors of bench/command.py (hftbacktest, NautilusTrader) in a locked venv of their
# own, so the runtime and test environments do not grow; the bench goes on without them.
ANCHORS := bench/anchors
bench: $(STAMP)
	UV_PROJECT_ENVIRONMENT=$(abspath $(ANCHORS)/.venv) $(UV) sync --quiet --locked \
		--project $(ANCHORS) --python $(PYTHON) \
		|| echo "the anchors (hftbacktest, NautilusTrader) could not be installed: skipped"
	$(BIN)/python bench/all.py

# The long part, opt-in (also `BENCH_DAY=1 make bench`): a 24-hour recording built from the
# bundled one (once, about 4 min, 407 MiB in ~/.cache/mmdaemon-bench), replayed streaming
# with RSS and frames/s per hour (about 6-8 min), then a sweep of it on 1 and 2 workers.
bench-day: $(STAMP)
	$(BIN)/python bench/day.py replay
	$(BIN)/python bench/day.py sweep

clean:
	rm -rf $(VENV) $(LATEST) $(TOOLS) dist build mmdaemon.egg-info .mypy_cache .ruff_cache \
		.pytest_cache .hypothesis
