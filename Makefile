# pointsym: two commands from a fresh clone
#   make demo   -> creates .venv if needed, then runs `pointsym demo`
#   make test   -> creates .venv if needed, then runs the test suite
PYTHON ?= python3
VENV   ?= .venv
# The CPU build is the default so that setup never pulls multi-GB CUDA wheels.
# GPU users: `make setup TORCH_SPEC="torch --index-url <your CUDA wheel index>"` (see README).
TORCH_SPEC ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.pointsym-installed

.PHONY: setup demo test test-all lint doctest check bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[test,all]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/pointsym demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

# ruff (rules in pyproject.toml [tool.ruff]) and mypy (packages in [tool.mypy] files)
lint: setup
	$(VENV)/bin/ruff check pointsym tests benchmarks scripts
	$(VENV)/bin/mypy

# the docstring examples under pointsym/ (flags in [tool.pytest.ini_options] doctest_optionflags)
doctest: setup
	$(PY) -m pytest --doctest-modules pointsym -q

# everything CI runs (.ci/run)
check: lint doctest test

bench: setup
	$(PY) benchmarks/soap_vs_dscribe.py

clean:
	rm -rf $(VENV) build *.egg-info results/demo
