# The README's two commands: `make benchmark` (the main job) and `make test`.
# Both create .venv and install abqa into it first, so they work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.abqa-installed

.PHONY: install benchmark test export clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

benchmark: $(STAMP)
	$(BIN)/abqa benchmark $(ARGS)

export: $(STAMP)
	$(BIN)/abqa export $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

clean:
	rm -rf $(VENV) runs
