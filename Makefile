# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use and
# re-install only when pyproject.toml changed (stamp file).
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(PY) -m stylegan_blend.demo

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf outputs .pytest_cache
