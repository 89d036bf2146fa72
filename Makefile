# TradeCore: `make demo` and `make test` are the two commands a new user needs.
# Both create .venv and install on first use (again only when pyproject.toml changes).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tradecore-installed
# torch first and pinned: 2.13.0 is the CPU build; any other spec pulls a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
# The machine's pip config points at local mirrors that may be absent; silence only that noise.
PIP_QUIET := grep -v "is ignored: it is neither a file nor a directory" || true

# Benchmark peers (gym-anytrading) live in their own site folder, not in the project's venv.
BENCH_PEERS := $(VENV)/bench-peers
BENCH_PEERS_STAMP := $(BENCH_PEERS)/.installed

# The UI tests drive Debian's Chromium (Playwright's own browser download is not used).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The Dagster instance: the user's own DAGSTER_HOME when set (never written into), else a
# repo-local one that the Makefile creates with its dagster.yaml.
DEFAULT_DAGSTER_HOME := $(CURDIR)/.dagster_home
DAGSTER_HOME ?= $(DEFAULT_DAGSTER_HOME)
export DAGSTER_HOME
INSTANCE_CONFIG := $(if $(filter $(DEFAULT_DAGSTER_HOME),$(DAGSTER_HOME)),$(DEFAULT_DAGSTER_HOME)/dagster.yaml)

.PHONY: demo test ui bench lint clean check-candles

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PIN) 2>&1 | { $(PIP_QUIET); }
	$(PY) -m pip install --quiet -e '.[dev]' 2>&1 | { $(PIP_QUIET); }
	$(PY) -c "import torch, dagster, talib, ccxt; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

# Run monitoring enforces start/cancel timeouts; dead_run_worker_sensor marks a run whose
# worker process died failed (the default run launcher reports no worker health). The pool
# limit caps the "training" pool: one training (one RunPod GPU pod) at a time.
$(DEFAULT_DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DEFAULT_DAGSTER_HOME)
	printf '%s\n' 'telemetry:' '  enabled: false' 'run_monitoring:' '  enabled: true' \
		'  start_timeout_seconds: 180' '  cancel_timeout_seconds: 180' \
		'  max_resume_run_attempts: 0' '  poll_interval_seconds: 120' \
		'concurrency:' '  pools:' '    default_limit: 1' > $@

$(CHROMIUM):
	$(SUDO) apt-get update -q
	$(SUDO) apt-get install -y -q chromium

## demo: the control markets' whole chains (planted edge promoted, null refused) on the local Dagster instance
demo: $(STAMP) $(INSTANCE_CONFIG)
	$(PY) -m tradecore_pipelines.demo

## test: the whole test suite, UI tests in Chromium included, one test file per worker on
## up to 4 cores (pytest exit 5, "no tests collected", is an error here)
test: $(STAMP) $(CHROMIUM)
	$(VENV)/bin/pytest -q -p no:cacheprovider -n auto --maxprocesses 4 --dist loadfile; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is broken" >&2; fi; \
	exit $$rc

## ui: the Dagster web UI and daemon (schedules, sensors, backfills) on http://127.0.0.1:3000
ui: $(STAMP) $(INSTANCE_CONFIG)
	$(VENV)/bin/dagster dev -w workspace.yaml

## check-candles: run the candle checks of every stored month (MARKET=<name> for one market)
## and record them in the instance; consumers refuse months without passed checks
check-candles: $(STAMP) $(INSTANCE_CONFIG)
	$(PY) -m tradecore_pipelines.check_records $(if $(MARKET),--market $(MARKET))

$(BENCH_PEERS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --no-deps --target $(BENCH_PEERS) gym-anytrading==2.0.0 2>&1 \
		| { $(PIP_QUIET); }
	touch $@

## bench: the benchmarks in bench/, each printing ratios against its peers
bench: $(STAMP) $(BENCH_PEERS_STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; PYTHONPATH=$(BENCH_PEERS) $(PY) $$b; done

lint: $(STAMP)
	$(VENV)/bin/ruff check tradecore_lib tradecore_pipelines tests bench

clean:
	rm -rf $(VENV) .dagster_home data/lake data/manifests
