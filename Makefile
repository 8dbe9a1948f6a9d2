# The README's commands. `make run` and `make test` create .venv when it is missing.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
# Stages call `python -m pipeline`: put the venv first on PATH for DVC's shell.
export PATH := $(abspath $(BIN)):$(PATH)
# Prefect's server and client would otherwise try to send usage data (DVC's is off in .dvc/config).
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: run test install ui ablation distributions qualitative report

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

## run: the whole DAG on the default params (embedded synthetic dataset); ends with the metrics
run: install
	$(BIN)/python -m pipeline repro

## test: the linter and the formatter's check (ruff, pyproject.toml's [tool.ruff]), then the test suite
test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

## ui: the Prefect UI on http://127.0.0.1:4200 (same database as the runs)
ui: install
	$(BIN)/prefect server start --host 127.0.0.1 --port 4200

## ablation: each completeness guidance (baseline, + score contrast, + feature contrast, both) x 3 seeds -> study/ablation/
ablation: install
	$(BIN)/python -m pipeline study --ablation --seeds 0,1,2 --out study/ablation

## distributions: the 5 label distributions x completeness off/on x 2 seeds -> study/distributions/
distributions: install
	$(BIN)/python -m pipeline study --grid points.distribution=center,gaussian,uniform,beta,manual \
	    --grid train.completeness=false,true --seeds 0,1 --out study/distributions

## qualitative: the ablation's baseline against LACP (seed 0) on 4 test videos -> study/qualitative/ (after make ablation)
qualitative: install
	$(BIN)/python -m pipeline qualitative "baseline (points only)" "+ both (LACP)" --study study/ablation

## report: the paper's claims checked on this data -> study/report/analysis.md and a Prefect artifact
report: install
	$(BIN)/python -m pipeline report
