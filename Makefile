# teledrive — every target does its own setup on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := gcc-avr avr-libc simavr libsimavr-dev libsimavrparts1 libelf-dev ethtool iproute2 pkg-config
PYTEST_ARGS ?=

.PHONY: all setup apt demo test lint format firmware rig bench clean

all: test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,console]'
	touch $(STAMP)

setup: $(STAMP) apt

# Debian packages for the firmware toolchain, the simavr rig and the link lab.
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

firmware: apt
	$(MAKE) -C hardware/firmware
	$(MAKE) -C hardware/firmware test

rig: apt
	$(MAKE) -C hardware/firmware
	$(MAKE) -C hardware/sim

demo: setup
	$(BIN)/teledrive demo $(DEMO_ARGS)

test: setup
	@if [ -f hardware/firmware/Makefile ]; then $(MAKE) -s firmware; fi
	@if [ -f hardware/sim/Makefile ]; then $(MAKE) -s rig; fi
	$(MAKE) -s lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# mypy sees the import names through a link farm (the package folders are mapped in pyproject).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@rm -rf .typecheck && mkdir -p .typecheck/teledrive && \
	  ln -s ../../shared .typecheck/teledrive/shared && \
	  ln -s ../../vehicle .typecheck/teledrive/vehicle && \
	  ln -s ../../operator .typecheck/teledrive/operator
	cd .typecheck && ../$(BIN)/mypy --config-file ../pyproject.toml -p teledrive.shared -p teledrive.vehicle -p teledrive.operator

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b --json || exit 1; done

clean:
	rm -rf $(VENV) .typecheck build *.egg-info .pytest_cache .mypy_cache
	-$(MAKE) -C hardware/firmware clean
	-$(MAKE) -C hardware/sim clean
