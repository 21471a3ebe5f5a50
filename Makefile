# Character Chat fleet: one virtual environment (.aienv) for every service and package.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .aienv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SERVICES := user-service character-service conversation-service message-service llm-service
PACKAGES := packages/chat-common packages/lmstudio-client
MYPYPATH := $(subst $(eval) ,:,$(foreach p,$(PACKAGES),../$(p)))
LOCK := requirements.lock
LOCK_INPUTS := requirements-dev.txt $(foreach s,$(SERVICES),$(s)/requirements.txt) \
	$(foreach p,$(PACKAGES),$(p)/pyproject.toml)

.PHONY: install lock run demo test fuzz lint format clean

# (Re)install whenever .aienv is missing or the lock or a lock input is newer than the last install.
# Third-party packages come from the lock only, every file checked against its hash; the local
# packages are installed editable on top, built by the lock's setuptools, their dependencies
# already there (pip check proves it).
$(STAMP): $(LOCK) $(LOCK_INPUTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation $(foreach p,$(PACKAGES),-e $(p))
	$(BIN)/pip check
	@$(BIN)/python -m tools.lock --check || echo "warning: installed the old lock"
	@touch $(STAMP)

install: $(STAMP)

# Re-pin everything (requirements.lock and each service's) from the requirements files: run it after
# changing one, and commit the locks with it.
lock: install
	$(BIN)/python -m tools.lock

run: install
	$(BIN)/python -m devstack

# With `make run` going in another terminal: a scripted walk through the API, with its curl commands.
demo: install
	$(BIN)/python -m devstack.demo

test: install
	$(BIN)/python -m pytest -q $(foreach p,$(PACKAGES),$(p)/tests) tests
	@for s in $(SERVICES); do echo "== $$s"; (cd $$s && ../$(BIN)/python -m pytest -q) || exit 1; done

# The schema fuzzer of `make test` (tests/e2e/test_fuzz.py) at length: FUZZ_EXAMPLES generated cases
# an operation (make test runs 3), FUZZ_SEED for other cases than the fixed ones.
FUZZ_EXAMPLES ?= 100
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/e2e/test_fuzz.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(foreach p,$(PACKAGES),$(p)) devstack tools
	@for s in $(SERVICES); do (cd $$s && MYPYPATH=$(MYPYPATH) ../$(BIN)/mypy --config-file ../pyproject.toml app) || exit 1; done

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache htmlcov .coverage
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Delete .devstack/ (make run's embedded databases, keys and logs); refused while make run uses it.
.PHONY: clean-data
clean-data:
	$(PYTHON) -m devstack.clean
