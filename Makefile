# The README's two commands. Both create .venv on a fresh clone and are fast the second time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-quick lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first: 2.13.0 is a local CPU wheel; any other spec pulls multi-GB CUDA builds.
$(STAMP): $(BIN)/python setup.py
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/s2gr demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The quick loop: everything but the slow tests (benchmark scripts end to end, several processes).
test-quick: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
