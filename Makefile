# Two commands matter: `make demo` (set up + run the main job) and `make test` (set up + test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSDEPS := $(VENV)/.system-deps

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# optional: a third-party Binance client for the interoperability test, and the atheris
	# fuzzer for the fuzz harnesses (their tests skip without them)
	$(BIN)/python -m pip install --quiet ccxt || echo "ccxt not installed: its test will skip"
	$(BIN)/python -m pip install --quiet atheris || echo "atheris not installed: skipped"
	touch $(STAMP)

# The main job: a dry run of the daemon on the bundled real Binance recording (paper
# exchange), printing its summary; then the book check against the venue's own tickers.
RECORDING := data/binance-spot-btcusdt/btcusdt_20240808.gz data/binance-spot-btcusdt/btcusdt_20240809.gz

demo: $(STAMP)
	$(BIN)/mmdaemon replay $(RECORDING) --config config/dryrun.toml
	$(BIN)/mmdaemon verify-book $(RECORDING)

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

test: $(STAMP) $(SYSDEPS) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check mmdaemon tests bench
	$(BIN)/mypy

# Every headline figure (issue #9) as one JSON object and a table; the single benchmarks
# under bench/ run on their own too (e.g. `.venv/bin/python bench/latency.py --help`).
bench: $(STAMP)
	$(BIN)/python bench/all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
