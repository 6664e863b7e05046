# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build here.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?= -m "not slow"

.PHONY: install demo test test-all lint format bench bench-install clean chromium

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[dev,postgres,ray,mlflow]'
	touch $@

demo: install
	$(BIN)/advrun run specs/quickstart.yaml

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check runner tests bench
	$(BIN)/ruff format --check runner tests bench

format: install
	$(BIN)/ruff format runner tests bench
	$(BIN)/ruff check --fix runner tests bench

# The `bench` extra without its dependencies: torchattacks asks for torchvision, whose PyPI
# builds do not work beside the pinned torch; its AutoAttack needs only torch, numpy and scipy.
# pyautoattack (Croce & Hein's original AutoAttack) declares none; --no-deps keeps it that way.
bench-install: install
	$(BIN)/python -m pip install -q --no-deps "torchattacks==3.5.1" "pyautoattack==0.2.0"

# advrun's audit suite against the original AutoAttack and torchattacks' on the model zoo
# (bench/attacks.py; about 2 hours on 2 shared cores; `--models`/`--n` for less)
bench: bench-install
	$(BIN)/python bench/attacks.py

# Headless Chromium for the report test (tests/integration/test_report_chromium.py), from
# Debian's package when missing (needs root, as in CI); without it that test is skipped.
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@chromium --version 2>/dev/null

clean:
	rm -rf $(VENV) reports .pytest_cache
