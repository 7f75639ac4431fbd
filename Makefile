# Quick start: `make run` (console + PROOF daemon on SQLite), `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run test check lint format venv clean bench bench-venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

run: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py aol_bootstrap_admin --url http://127.0.0.1:$(PORT)/
	@echo "Starting the web console and the PROOF daemon; Ctrl+C stops both."
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" AICMO_PORT=$(PORT) $(PY) -m honcho start -f Procfile

test: venv
	$(PY) tests/run_suites.py $(ARGS)

# The small gate before every change.
check: venv
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy orchestration llm

lint: check

# Benchmarks against django-tasks-db, Procrastinate and a raw psycopg floor (bench/README.md).
# `make bench` (full, ~25 min) or `make bench ARGS=--quick` (under 3 min). Needs the local PostgreSQL.
BENCH_VENV := bench/.venv

bench-venv: $(BENCH_VENV)/.installed

$(BENCH_VENV)/.installed: bench/requirements.txt requirements.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

bench: bench-venv
	$(BENCH_VENV)/bin/python bench/run.py $(ARGS)

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) $(BENCH_VENV) bench/var test-output staticfiles
