# vitwatch: the two commands are `make report` and `make test` (see README.md).
PROFILE ?= full
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: help install report test test-fast lab bench strip lint preflight rehearsal clean

help:
	@echo "make report [PROFILE=full|quick|smoke] [JOBS=2]  execute the notebooks (2 at once), write reports/<profile>/vitwatch-report.{html,pdf}"
	@echo "make test                               unit tests + every notebook under smoke + the report build"
	@echo "make lab                                JupyterLab with the project's kernel"
	@echo "make bench [TIMM_PYTHON=...]            throughput of the backbones and the input pipeline (vs timm), 05's training step"
	@echo "make preflight [PROFILE=...]            check the downloads a profile needs, then stop"
	@echo "make rehearsal                          notebooks 02-05 on the quick path with full-size stand-ins served locally"
	@echo "make strip                              remove outputs from notebooks/ before committing"
	@echo "make lint                               ruff (lint + format check) and the no-outputs check of notebooks/"

# The virtual environment, rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name vitwatch --display-name "Python (vitwatch)" >/dev/null
	@touch $(STAMP)

install: $(STAMP)

report: $(STAMP)
	$(BIN)/vitwatch report --profile $(PROFILE) $(if $(JOBS),--jobs $(JOBS))

preflight: $(STAMP)
	$(BIN)/vitwatch preflight --profile $(PROFILE)

test: $(STAMP)
	$(BIN)/python -m pytest

# unit tests only (no notebook execution, no report build)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

# dress rehearsal of `make report PROFILE=quick`: downloads answered by a loopback mirror
rehearsal: $(STAMP)
	$(BIN)/vitwatch rehearsal $(if $(AT_SIZE),--at-size)

# TIMM_PYTHON=/path/to/python (one with torch + timm) adds timm's rows and the ratio to timm
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_backbones.py $(if $(TIMM_PYTHON),--timm-python $(TIMM_PYTHON))
	$(BIN)/python benchmarks/bench_small.py

strip: $(STAMP)
	$(BIN)/vitwatch strip

# ruff (configured in pyproject.toml) and nbstripout: notebooks are committed without outputs
LINT_PATHS := src tests scripts benchmarks
lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/nbstripout --verify --keep-id notebooks/*.ipynb

clean:
	rm -rf reports/*/ figures/*/ .pytest_cache
