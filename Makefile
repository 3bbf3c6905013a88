# EVLF-Bench: `make bench` runs the default grid, `make test` runs the tests, `make pages`
# regenerates the committed leaderboards.
# Both run `make setup` first; it is idempotent.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup data bench pages test clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

data:
	@$(BIN)/python -m benchmark.setup_data

# the design card's job (grids/default.toml) into ./bench-results, and its leaderboard
bench: setup
	$(BIN)/bench run --grid default
	$(BIN)/bench leaderboard --out bench-results/leaderboards

# the committed pages: their grids into leaderboards/store (what is stored is not rerun), then the
# pages rewritten from it; the tuned grid needs the studies already in that store (`bench tune`)
PAGES := leaderboards/store
pages: setup
	$(BIN)/bench run --grid published --store $(PAGES) --no-leaderboard
	$(BIN)/bench run --grid tuned --store $(PAGES) --no-leaderboard
	$(BIN)/bench run --grid parity --store $(PAGES) --no-leaderboard
	$(BIN)/bench run --grid parity-full --store $(PAGES) --no-leaderboard --cpus-per-trial 2
	$(BIN)/bench leaderboard --store $(PAGES) --out leaderboards

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) bench-results
