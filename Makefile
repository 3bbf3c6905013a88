# EVLF-Bench: `make bench` runs the default grid, `make test` runs the tests.
# Both run `make setup` first; it is idempotent.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup data bench test clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

data:
	@$(BIN)/python -m benchmark.setup_data

bench: setup
	$(BIN)/bench run
	$(BIN)/bench leaderboard --out leaderboards

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) bench-results
