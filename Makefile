# Two commands do everything (see README):  make run   /   make test
# Both create the virtual environment first if it is missing.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
# The dashboard has no login: it listens on this machine only. To share it, put it behind an
# authenticating reverse proxy and set HOST (e.g. make run HOST=0.0.0.0); see README "Sharing".
HOST   ?= 127.0.0.1
export OMP_NUM_THREADS ?= 2

.PHONY: run test lint venv demo bench train clean

venv: $(VENV)/.installed

# torch first, pinned: the pair installs from the local wheel cache; an unpinned torch pulls GBs.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

run: venv
	$(PY) -m dashboard.serve --server.headless true --server.address $(HOST) --server.port $(PORT) \
		--server.fileWatcherType none --browser.gatherUsageStats false

test: venv
	bash scripts/ensure_chromium.sh
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: venv
	$(PY) -m ruff check .

demo: venv
	$(PY) -m dsg_core generate --method dsg --samples 32 --iterations 200 --out runs/demo.safetensors --progress
	$(PY) -m dsg_core diagnose --samples runs/demo.safetensors

bench: venv
	$(PY) bench/speed.py
	$(PY) bench/reproduce.py

train: venv
	$(PY) scripts/train_embedded.py

clean:
	rm -rf $(VENV) .pytest_cache artifacts
