# nodrute developer commands. README: run = `make run`, test = `make test`.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# apt-get needs root: use sudo only when we are not root already.
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: venv deps run test lint loadtest-data bench

## venv: .venv with the project (editable) and its test tools; redone when pyproject.toml changes
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## deps: SIPp (Debian sip-tester) and the MQTT broker mosquitto for the end-to-end tests
deps:
	@if command -v sipp >/dev/null 2>&1 && command -v mosquitto >/dev/null 2>&1; then \
		echo "sipp: $$(command -v sipp), mosquitto: $$(command -v mosquitto)"; \
	else \
		echo "installing sipp (Debian package sip-tester) and mosquitto"; \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends sip-tester mosquitto; \
	fi

## run: the router on 127.0.0.1:5060 (UDP and TCP) with the sample routing table
run: venv
	$(BIN)/nodrute serve --config configs/nodrute.toml

## test: lint, then every test, SIPp end-to-end tests included (pytest exits non-zero if none ran)
test: venv deps lint
	$(BIN)/python -m pytest -q

## lint: ruff and mypy (strict on sip/, router/, municipality_map/)
lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

## loadtest-data: regenerate loadtests/data/calls_all.csv from the sample table
loadtest-data: venv
	$(BIN)/python loadtests/make_call_csv.py

## bench: router vs SIPp-only ceiling, calls/s ramp + held calls, then media: IVR sessions and
## bridged calls with RTP, CPU per 100 streams, then caller location: lookup and PIDF-LO parse
## times (~8 min; loadtests/README.md).
## Media only: make bench BENCH_ARGS="--only media"; calls only: BENCH_ARGS="--only calls";
## location only (~15 s): BENCH_ARGS="--only location".
## Longer runs: make bench BENCH_ARGS="--step-s 30 --repeat 3 --keep-going"
bench: venv deps
	$(BIN)/python loadtests/bench.py $(BENCH_ARGS)
