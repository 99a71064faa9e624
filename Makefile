# Two commands set up a fresh machine: `make demo` and `make test`.
# Each creates .venv if missing and installs the project (the C filter bank is compiled
# by the package build). The stamp file makes a second run install nothing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.engramloop-installed
# torch is the optional extra engramloop[forecaster] (docs/install.md); the demo and the
# tests use the forecaster, so the CPU build pinned in constraints.txt comes from PyTorch's
# CPU index (PyPI's Linux torch pulls GBs of CUDA packages). Only torch itself comes from
# that index (--no-deps); its dependencies come with the project's, from the usual index.
# TORCH_INDEX= skips that index.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PIP_INSTALL := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test install bench lint clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3'"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml setup.py constraints.txt $(wildcard src/engramloop/decoders/_kernels/*.[ch])
	$(PIP_INSTALL) "setuptools>=64" wheel
	$(PIP_INSTALL) --no-deps $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch
	$(PIP_INSTALL) --no-build-isolation -e ".[dev,forecaster]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/engramloop demo

# two pytest-xdist workers (CI has 2 cores); the tests marked realtime run one after
# another on one of them (tests/conftest.py). TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info src/engramloop/decoders/*.so
