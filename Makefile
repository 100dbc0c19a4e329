# Everything runs from the repository root; deploy/stack.sh documents the environment variables.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: bootstrap test lint up down bench

bootstrap:  ## .venv + pip install -e '.[test]', redis-server, Kafka jars (idempotent)
	deploy/bootstrap.sh

test: bootstrap  ## the test suite; tests/conftest.py starts its own Kafka + Redis on test ports
	$(PY) -m pytest -q

lint: bootstrap
	$(VENV)/bin/ruff check src tests

up: bootstrap  ## local Kafka + Redis + sanctiongate on the dev ports
	$(VENV)/bin/sanctiongate up

down:
	if [ -x $(VENV)/bin/sanctiongate ]; then $(VENV)/bin/sanctiongate down; else deploy/stack.sh stop; fi

bench: bootstrap
	$(PY) bench/stream.py $(BENCH_ARGS)
