# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch pinned in the same install as advrun: a bare `torch` requirement would pull a multi-GB
# CUDA build here (on a GPU machine pass the build you need: make TORCH=torch==X).
TORCH ?= torch==2.13.0
PYTEST_ARGS ?= -m "not slow"
SITE ?= site
# Material for MkDocs prints a banner about its successor on every build: not ours to act on
export NO_MKDOCS_2_WARNING := 1

.PHONY: install install-core demo test test-all lint docs docs-serve format bench bench-install clean chromium \
	gpu-wheels gpu-check

# Two install stamps: the demo needs only the core (`pip install -e .`); tests, lint and docs add
# the extras (dev, postgres, ray, mlflow, docs), which take a few minutes more on a fresh machine.
# The core skips pip's byte-compilation of every installed module (--no-compile): two thirds of
# its CPU time (10,700 files, torch's mostly), most of which the demo never imports; Python
# compiles what it imports. The test install compiles the rest afterwards (many test processes
# import torch, so they start faster compiled); like pip, it leaves a file that does not compile.
SITE_PACKAGES = $(VENV)/lib/python*/site-packages
install-core: $(VENV)/.core
install: $(VENV)/.installed

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile "$(TORCH)" -e .
	touch $@

$(VENV)/.installed: $(VENV)/.core
	$(BIN)/python -m pip install -q -e '.[dev,postgres,ray,mlflow,docs]'
	$(BIN)/python -m compileall -q -j 0 $(SITE_PACKAGES) >/dev/null || true
	touch $@

demo: install-core
	$(BIN)/advrun run specs/quickstart.yaml

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check runner tests bench docs/hooks docs/examples tools
	$(BIN)/ruff format --check runner tests bench docs/hooks docs/examples tools
	$(BIN)/lint-imports  # the import layers and no cycles: .importlinter
	$(BIN)/mkdocs build --strict --quiet --site-dir $(SITE)

# The documentation site (mkdocs.yml, docs/): --strict fails on any warning, a broken link or
# anchor included. `make docs-serve` previews it at http://127.0.0.1:8000.
docs: install
	$(BIN)/mkdocs build --strict --site-dir $(SITE)

docs-serve: install
	$(BIN)/mkdocs serve

format: install
	$(BIN)/ruff format runner tests bench docs/hooks docs/examples tools
	$(BIN)/ruff check --fix runner tests bench docs/hooks docs/examples tools

# The `bench` extra without its dependencies: torchattacks asks for torchvision, whose PyPI
# builds do not work beside the pinned torch; its AutoAttack needs only torch, numpy and scipy.
# pyautoattack (Croce & Hein's original AutoAttack) declares none; --no-deps keeps it that way.
bench-install: install
	$(BIN)/python -m pip install -q --no-deps "torchattacks==3.5.1" "pyautoattack==0.2.0"

# advrun's audit suite against the original AutoAttack and torchattacks' on the model zoo
# (bench/attacks.py; about 2 hours on 2 shared cores; `--models`/`--n` for less)
bench: bench-install
	$(BIN)/python bench/attacks.py

# The wheels a bare GPU machine lacks (ART, Optuna, pydantic, the bench's references...), for
# CPython 3.12 on manylinux x86-64, pinned at this venv's versions, into .whl/ (git-ignored):
# bench/gpu_wheels.py. They travel with the checkout to a GPU machine that reaches no registry.
gpu-wheels: install
	$(BIN)/python bench/gpu_wheels.py

# Every GPU claim measured in one run of at most 8 minutes (bench/gpu_check.sh; docs/performance.md).
# On the GPU machine: `make gpu-check` (its own python3 and torch, the wheels of .whl/). Here, the
# same parts at toy size: make gpu-check PYTHON=.venv/bin/python GPU_CHECK_DEVICE=cpu
GPU_CHECK_DEVICE ?= cuda
GPU_CHECK_OUT ?= reports/gpu-check
gpu-check:
	PYTHON=$(PYTHON) bash bench/gpu_check.sh --device $(GPU_CHECK_DEVICE) $(GPU_CHECK_OUT)

# Headless Chromium for the report test (tests/integration/test_report_chromium.py), from
# Debian's package when missing (needs root, as in CI); without it that test is skipped.
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@chromium --version 2>/dev/null

clean:
	rm -rf $(VENV) reports .pytest_cache $(SITE)
