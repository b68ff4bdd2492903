# The README's two commands: `make benchmark` (the main job) and `make test`.
# Both create .venv and install abqa into it first, so they work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.abqa-installed

.PHONY: install benchmark test export clean

INSTALL_LOG := $(VENV)/install.log

# pip and setuptools write pages a user has no use for: they go to $(INSTALL_LOG), and only a failure shows
# its tail here.
$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV)
	@echo "installing abqa and its dependencies into $(VENV) (a few minutes the first time; log: $(INSTALL_LOG))"
	@{ $(BIN)/python -m pip install --upgrade pip && $(BIN)/python -m pip install -e ".[test]"; } \
		> $(INSTALL_LOG) 2>&1 || { tail -n 30 $(INSTALL_LOG); echo "install failed: see $(INSTALL_LOG)"; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

benchmark: $(STAMP)
	$(BIN)/abqa benchmark $(ARGS)

export: $(STAMP)
	$(BIN)/abqa export $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

clean:
	rm -rf $(VENV) runs
