# Two commands matter: `make run` and `make test`. Both create .venv themselves.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench check clean

$(STAMP): pyproject.toml
	PYTHON=$(PYTHON) bash scripts/bootstrap.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/companion check
	$(BIN)/companion serve --host 127.0.0.1 --port 8000 --demo

test: $(STAMP)
	bash scripts/install-chromium.sh
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

check: $(STAMP)
	$(BIN)/companion check

clean:
	rm -rf $(VENV) build *.egg-info
