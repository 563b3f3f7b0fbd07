# The two commands of the README: `make demo` (the main job) and `make test` (the whole suite).
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: setup demo test lint unit broker-start broker-stop

setup:
	@bash .ci/setup.sh

demo: setup
	$(VENV)/python -m services.demo

test: setup
	BDGUARD_TEST_POSTGRES_URL=$${BDGUARD_TEST_POSTGRES_URL:-$$(bash .ci/postgres.sh | tail -n1)} \
	BDGUARD_TEST_CHROMIUM=$${BDGUARD_TEST_CHROMIUM:-$$(bash .ci/chromium.sh | tail -n1)} \
	  $(VENV)/pytest -p no:cacheprovider
	$(MAKE) lint

lint:
	$(VENV)/ruff check .
	$(VENV)/mypy

unit: setup
	$(VENV)/pytest -m "unit or contract" -q

broker-start: setup
	$(VENV)/bdguard broker start

broker-stop:
	$(VENV)/bdguard broker stop
