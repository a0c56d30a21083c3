# The README's two commands: `make demo` and `make test`. Both install first
# (idempotent; a no-op when .venv already matches requirements.txt).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# e.g. make demo DEMO_ARGS="--work-dir /tmp/morphhr_work"
DEMO_ARGS ?=

.PHONY: install demo test lint format lock

install:
	@MORPHHR_VENV=$(VENV) bash tools/install.sh

demo: install
	$(PY) pipelines/local_runner.py $(DEMO_ARGS)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

lock:
	bash tools/update_lock.sh
