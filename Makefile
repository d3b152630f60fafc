# The two commands: `make run` (everything on the embedded PostgreSQL unless
# DATABASE_URL is set) and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
SUPABASE_CLI := node_modules/.bin/supabase

.PHONY: run test test-security bench lint format db-push install tools clean

run: $(INSTALLED)
	$(BIN)/aerelion run

test: $(INSTALLED) $(SUPABASE_CLI)
	$(BIN)/pytest $(PYTEST_ARGS)

# The security suite alone (tests marked `security`), as a reviewer runs it.
test-security: $(INSTALLED) $(SUPABASE_CLI)
	$(BIN)/pytest -m security $(PYTEST_ARGS)

bench: $(INSTALLED)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null) \
		|| (echo "make bench needs wrk (apt-get install wrk)" >&2; exit 1)
	$(BIN)/python -m bench

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

db-push: $(INSTALLED)
	$(BIN)/aerelion db push --include-seed

install: $(INSTALLED)

tools: $(SUPABASE_CLI)

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

$(SUPABASE_CLI): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

clean:
	-$(BIN)/aerelion db stop
	rm -rf $(VENV) node_modules .aerelion
