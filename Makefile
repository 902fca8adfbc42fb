# hyperflux: `make run` starts the collector, `make test` runs the tests. Both set everything up
# on a fresh Debian/Ubuntu machine: a .venv with the pinned requirements and, when they are missing
# and we may install packages (root or password-less sudo), the Debian packages `influxdb` (run and
# test) and `redis-server` (tests), and for the EVM tests Node.js with the npm packages in
# tools/evm/package.json (the anvil node and the compiled Uniswap contracts) under tools/evm/.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
ARGS ?=
DEMO_PORT ?= 8090

.PHONY: run demo test bench lint format influxd redis-server evm-tools venv clean

run: $(RUNTIME)
	@[ -n "$$HYPERFLUX_INFLUX_URL" ] || $(MAKE) --no-print-directory influxd || true
	$(BIN)/python main.py run $(ARGS)

# The collector against the local Hyperliquid simulator (tests/simulator), into its own database.
demo: $(DEV) influxd
	@$(BIN)/python -m tests.simulator --port $(DEMO_PORT) --rate 50 & sim=$$!; \
	trap 'kill $$sim 2>/dev/null' EXIT INT TERM; sleep 1; \
	HYPERFLUX_HL_API_URL=http://127.0.0.1:$(DEMO_PORT) HYPERFLUX_HL_WS_URL=ws://127.0.0.1:$(DEMO_PORT)/ws \
	HYPERFLUX_INFLUX_DB=hyperflux_demo HYPERFLUX_DATA_DIR=data/demo $(BIN)/python main.py run $(ARGS)

test: $(DEV) influxd redis-server evm-tools
	$(BIN)/python -m pytest $(ARGS)

bench: $(DEV) influxd
	$(BIN)/python -m bench $(ARGS)

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

venv: $(BIN)/python

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
		{ echo "hyperflux needs Python 3.11 or newer as $(PYTHON) (set PYTHON=...)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); $(call apt_install,python3-venv) && $(PYTHON) -m venv $(VENV); } || \
		{ echo "cannot create a virtualenv: install python3-venv (sudo apt-get install -y python3-venv)"; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip

$(RUNTIME): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements.txt
	@touch $@

$(DEV): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	@touch $@ $(RUNTIME)

# apt_install PACKAGE: install a Debian package as root or with password-less sudo, else fail.
define apt_install
	{ if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else \
		echo "need root to install $(1): sudo apt-get install -y $(1)"; false; fi && \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; }
endef

influxd:
	@command -v influxd >/dev/null || [ -x /usr/bin/influxd ] || { \
		echo "influxd not found: installing the Debian package influxdb"; \
		$(call apt_install,influxdb); }

redis-server:
	@command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || { \
		echo "redis-server not found: installing the Debian package redis-server"; \
		$(call apt_install,redis-server); }

# anvil (a local EVM node) and the Uniswap V2/V3 build artifacts, pinned in tools/evm/package.json.
EVM_TOOLS := tools/evm/node_modules/.installed
evm-tools: $(EVM_TOOLS)

$(EVM_TOOLS): tools/evm/package.json tools/evm/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: installing the Debian packages nodejs npm"; \
		$(call apt_install,nodejs npm); }
	cd tools/evm && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis tools/evm/node_modules
