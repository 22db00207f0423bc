# The two commands (see README): `make study` runs the default sim study, `make test` runs the tests.
# Both create .venv (Python 3.12) and install the locked dependencies first when needed.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: study test env lab bench clean-env

JOBS ?= $(shell nproc)
# test workers (pytest-xdist), one test file per worker at a time: module fixtures are built once
TEST_JOBS ?= 2

# dvc repro, with up to JOBS independent stages (the fine-tuning runs) at once; JOBS=1: plain dvc repro
study: env
	hilstudy repro -j $(JOBS)

test: env
	python -m pytest -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder

env:
	@bash scripts/setup_env.sh

lab: env
	jupyter lab notebooks/

bench: env
	python benchmarks/speed.py
	python benchmarks/learner.py
	python benchmarks/expert.py
	python benchmarks/study.py

clean-env:
	rm -rf $(VENV)
