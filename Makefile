# Set-up and everyday commands. `make demo` and `make test` work on a bare machine with Python 3.11.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/genforge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,export]"
	@touch $@

install: $(BIN)/genforge

demo: install
	$(BIN)/genforge demo

test: install
	$(BIN)/python -m pytest tests -q -rs

clean:
	rm -rf $(VENV) runs .pytest_cache
