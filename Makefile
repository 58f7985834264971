# The README's two commands: `make demo` and `make test`. Everything else is a helper of those two.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?= /usr/share/datasets/fashion-mnist
RUN ?= runs/demo

.PHONY: demo test install dev-install dataset bench clean

# A CPU machine gets the local CPU wheel of torch (an unpinned torch would pull several GB of CUDA).
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	@if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q torch; else $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -e .
	@touch $@

$(VENV)/.dev-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(VENV)/.installed
dev-install: $(VENV)/.dev-installed

# Fashion-MNIST from Debian's package; installed where this machine can (root + apt-get).
dataset:
	@bash scripts/ensure-dataset.sh "$(DATA)"

demo: install dataset
	$(PY) -m minwa demo --data "$(DATA)" --out "$(RUN)"

test: dev-install
	@bash scripts/ensure-dataset.sh "$(DATA)" --optional
	@bash scripts/ensure-photos.sh
	@bash scripts/ensure-torchvision.sh
	@bash scripts/ensure-wordnet.sh
	@bash scripts/ensure-chromium.sh
	$(PY) -m pytest -q

bench: dev-install dataset
	$(PY) -m minwa bench train --data "$(DATA)" --json

clean:
	rm -rf $(VENV) runs build *.egg-info
