# Two commands for a newcomer: `make run` and `make test`. `make help` lists the rest.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080
STAMP := $(VENV)/.installed-stamp

.PHONY: help install run test lint bench clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

install: $(STAMP) ## create .venv and install the project with its dev tools

run: $(STAMP) ## migrate, load the demo world if empty, print an API key, serve on 127.0.0.1:$(PORT)
	$(BIN)/authz db upgrade
	$(BIN)/authz demo --if-empty
	@key=$$($(BIN)/authz keys create --name "make-run-$$(date +%Y%m%d-%H%M%S)" --scopes all | tail -n 1); \
	  echo; echo "API key (all scopes): $$key"; \
	  echo "try:  curl -s -H 'Authorization: Bearer $$key' http://127.0.0.1:$(PORT)/v1/aspire/status"; echo
	exec $(BIN)/gunicorn -c service/gunicorn_conf.py -b 127.0.0.1:$(PORT) service.wsgi:app

test: $(STAMP) ## policy fixtures, then unit and API tests on SQLite and PostgreSQL
	$(BIN)/authz test
	$(BIN)/pytest -n auto

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP) ## decisions and lists at 1,000,000 contracts, SQLite and PostgreSQL, in-process and HTTP
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	@command -v wrk >/dev/null || apt-get install -y -q wrk || (apt-get update -q && apt-get install -y -q wrk) \
	  || { echo "make bench needs wrk, the load generator (Debian package wrk)"; exit 1; }
	$(BIN)/python -m bench

clean: ## remove the virtualenv and local data
	rm -rf $(VENV) var
