# The README's two commands: `make demo` (the main job) and `make test` (the suite).
# Each creates or reuses .venv and installs what it needs; nothing else is assumed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pitgrid-installed

PEERS ?= .venv-peers
PEERS_STAMP := $(PEERS)/.peers-installed

.PHONY: demo test test-all test-peers bench bench-smoke compare install browser clean

$(STAMP): pyproject.toml setup.py $(wildcard cython_ext/*.pyx cython_ext/*.pxd cython_ext/*.pxi)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	# torch first and pinned, so that no dependency resolution pulls a CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q "cython>=3.0" "numpy>=1.26"
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[test,bench]"
	touch $(STAMP)

# vectorbt in its own environment (the `peers` extra of pyproject.toml), so its pins
# never change pitgrid's
$(PEERS_STAMP): pyproject.toml
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q --upgrade pip
	$(PEERS)/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['peers']))" > $(PEERS)/requirements.txt
	$(PEERS)/bin/python -m pip install -q -r $(PEERS)/requirements.txt
	touch $(PEERS_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pitgrid demo

# Debian's headless Chromium, which the report tests render in (apt; a no-op when present)
browser:
	bash .ci/install-browser

test: $(STAMP) browser
	$(BIN)/python -m pytest -m "not slow and not peers" -q

test-all: $(STAMP) browser
	$(BIN)/python -m pytest -m "not peers" -q

# parity with the peers (vectorbt, backtrader) in their own environment: pitgrid runs here,
# each peer in $(PEERS) through a script that writes its fills for the test to compare
test-peers: $(STAMP) $(PEERS_STAMP)
	PITGRID_PEER_PYTHON=$(abspath $(PEERS))/bin/python $(BIN)/python -m pytest -m peers -q

bench: $(STAMP)
	$(BIN)/python benches/run_workloads.py

# one quick pass of every asv benchmark in this environment (CI runs it)
bench-smoke: $(STAMP)
	$(BIN)/asv machine --yes --machine ci >/dev/null
	$(BIN)/asv run --python=same --quick --machine ci --show-stderr --dry-run

# pitgrid against vectorbt, W1 to W4 (docs/benchmarks.md); ARGS= "" for the full sizes
ARGS ?= --quick
compare: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python benches/compare.py $(ARGS) --peer-python $(PEERS)/bin/python

clean:
	rm -rf build $(VENV) $(PEERS) src/pitgrid/*.so cython_ext/*.c
