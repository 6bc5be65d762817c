# Two commands on a fresh machine:  `make demo`  (the whole service on the local cloud, default data)
#                                   `make test`  (the whole test suite)
# Both set up what they need first: a virtualenv, the verified models and the registry test data.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint typecheck static-checks check-packaging bench-speed bench-coldstart bench-cost bench-accuracy release-gate clean

$(BIN)/facegate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(BIN)/facegate
	$(BIN)/facegate models build
	$(BIN)/facegate data fetch
	scripts/install-dynamodb-local

# The whole service on the local cloud (moto in-process, the real template, ASL files and handlers).
demo: setup
	$(BIN)/facegate local demo

# pytest exits 5 when it collects no test: that means a broken checkout, never a pass.
test: setup
	@$(BIN)/python -m pytest tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

lint: $(BIN)/facegate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/facegate
	$(BIN)/mypy

# sam validate (--lint and plain), cfn-lint on the template and its translation, statelint, moto's ASL parser.
static-checks: $(BIN)/facegate
	bash scripts/static-checks

# sam build of the zip functions, the image functions' install step, sizes against Lambda's limits.
check-packaging: setup
	bash scripts/check-packaging

bench-speed: setup
	$(BIN)/python -m benchmarks.speed

# Every function's cold start in a fresh process (import, settings, clients, models, first request for
# Detect and Embed) against moto in server mode, and its peak memory.
bench-coldstart: setup
	$(BIN)/python -m benchmarks.coldstart

bench-cost: setup
	$(BIN)/python -m benchmarks.cost

bench-accuracy: setup
	$(BIN)/python -m benchmarks.accuracy

# The per-group evaluation of every labelled set (fetched, and ../shared/data) against the configured
# bounds (benchmarks/release_gate.json): exits 3 when a bound is exceeded. Reports in build/release-gate/.
release-gate: setup
	$(BIN)/facegate release-gate --out build/release-gate

clean:
	rm -rf $(VENV) .venv-tools .aws-sam .pytest_cache .mypy_cache .ruff_cache
