# Two commands matter: `make run` (set up, build the demo register, do the main job) and
# `make test`. Everything installs into .venv from the package registries; nothing else is
# downloaded at run time.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# The demo register: Region Nordjylland at full density, 2020-2025 (about a minute to build).
DATA ?= data
DEMO_AREA ?= 1081
DEMO_YEARS ?= 2020:2025
SEED ?= 2026
PORT ?= 8866
# The report site `make run` renders before serving, for the public (the overview and cluster
# pages; practice pages need `workbench render --profile analyst` or practice:ID): a documented
# slice, the first RENDER_LIMIT pages of each theme (the overview and the first clusters: 20
# pages); `make render RENDER_LIMIT=` renders all (the demo region's 12 clusters: 52 pages).
# The first render builds the answer store every page reads (`workbench data build`, its phases
# printed: 21 minutes, 828 MiB for the demo region on 2 busy cores); later runs reuse it while
# data, definitions and code are unchanged. A re-run skips unchanged pages.
SITE ?= site
RENDER_LIMIT ?= 10

.PHONY: run serve render test lint bench install binder-check clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

GENERATOR_INPUTS := $(shell find workbench/data -name '*.py' 2>/dev/null) \
	$(wildcard parameters/*.yaml) $(wildcard data/reference/*.csv)

$(DATA)/workbench.duckdb: $(STAMP) $(GENERATOR_INPUTS)
	$(BIN)/workbench data generate --area $(DEMO_AREA) --years $(DEMO_YEARS) --seed $(SEED) --data $(DATA)
	@touch $@

run: $(DATA)/workbench.duckdb
	$(BIN)/workbench data info --data $(DATA)
	$(MAKE) --no-print-directory render
	$(BIN)/workbench serve --port $(PORT) --data $(DATA) --site $(SITE)

# The batch (Papermill): theme pages for the dataset's clusters and practices into $(SITE)/.
# A failed page is reported (see $(SITE)/manifest.json) but doesn't stop the dashboards.
render: $(DATA)/workbench.duckdb
	$(BIN)/workbench render --theme all --area nation $(if $(RENDER_LIMIT),--limit $(RENDER_LIMIT)) \
		--data $(DATA) --out $(SITE) || echo "render: some pages failed, see $(SITE)/manifest.json"

# The read-only dashboards (standalone Voila) on the dataset; prints where to open them.
serve: $(DATA)/workbench.duckdb
	$(BIN)/workbench serve --port $(PORT) --data $(DATA)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python tests/bench/run.py

# Binder can't run here (no Docker engine): install binder/ into a fresh venv and run postBuild.
binder-check:
	bash binder/check.sh

clean:
	rm -rf $(VENV) $(DATA)/register $(DATA)/ground_truth $(DATA)/reports $(DATA)/workbench.duckdb $(SITE)
