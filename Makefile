# One-command entry points. `make demo` and `make test` set up everything they need.
SHELL := /bin/bash
PY    := .venv/bin/python
STACK := $(PY) local/stack.py
# the test suite's own stack (conftest.py): .stack/test, every port + 10000
TEST_STACK_ENV := JOURNEY_STACK_DIR=$(CURDIR)/.stack/test JOURNEY_STACK_PORT_OFFSET=10000

.PHONY: help setup up down status reset topics demo ingest profiles chaos lint test test-unit test-operator test-e2e quality bench clean

help:
	@echo "make demo    - setup if needed, start Kafka+Cassandra+Flink, generate events, run the ingestion and profiles jobs, print a summary"
	@echo "make test    - setup if needed, lint (ruff check, ruff format --check, mypy), then unit, operator"
	@echo "               (mini-cluster) and end-to-end (real stack) tests"
	@echo "make bench   - (~35 min) sustained drain rate of a 1M-record backlog per stage at p=1, 2 and 4 with"
	@echo "               exactly-once, vs a plain loop and a hand-written consumer; offered-load steps, latency"
	@echo "               p50/p99 at half load, checkpoints, Cassandra requests per event, py-spy top frames:"
	@echo "               bench/results/sustained.json, plots, README table; then journeys/segments costs and identity supernodes"
	@echo "make quality - the online models on the generator's planted behaviour: cluster ARI, purchase propensity AUC"
	@echo "make chaos   - exactly-once under failure: TaskManager/JobManager kills, savepoint rescale, Cassandra down/paused, Kafka restart"
	@echo "make up | down | status | reset   - the local stack (data and logs in .stack/; down and reset also stop"
	@echo "                                    and wipe the tests' own stack in .stack/test)"
	@echo "make ingest | profiles            - run the ingestion / identity+profiles job on the local cluster (unbounded)"

setup:
	@bash local/setup.sh

up: setup
	@$(STACK) up
	@$(PY) -m k8s.topics
	@$(PY) -m state.cassandra_schema

down:
	@if [ -x $(PY) ]; then $(STACK) down; else python3 local/stack.py down; fi
	@if [ -d .stack/test/run ]; then $(TEST_STACK_ENV) $$( [ -x $(PY) ] && echo $(PY) || echo python3 ) local/stack.py down >/dev/null; fi

status:
	@$(STACK) status

reset:
	@if [ -x $(PY) ]; then $(STACK) reset; else python3 local/stack.py reset; fi
	@if [ -d .stack/test ]; then $(TEST_STACK_ENV) $$( [ -x $(PY) ] && echo $(PY) || echo python3 ) local/stack.py reset >/dev/null; fi

topics:
	@$(PY) -m k8s.topics

demo: setup
	@$(PY) -m local.demo

ingest: up
	@$(PY) -m local.run_ingestion

profiles: up
	@$(PY) -m local.run_profiles

lint: setup
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy

test: lint
	@$(PY) -m pytest -ra --durations=25

test-unit: setup
	@$(PY) -m pytest -ra tests/unit models generator state operators

test-operator: setup
	@$(PY) -m pytest -ra -m operator tests/operator

test-e2e: setup
	@$(PY) -m pytest -ra -m e2e tests/e2e

chaos: setup
	@$(PY) -m pytest -ra -m chaos --chaos-all tests/chaos

quality: setup
	@$(PY) -m bench.quality

bench: setup
	@$(PY) -m bench.sustained --profile-s 20 --parallelism 1,2,4
	@$(PY) -m bench.report
	@$(PY) -m bench.journeys_bench
	@$(PY) -m bench.identity_supernode --sizes 1000,4000,16000 --no-state
	@$(PY) -m bench.identity_supernode --sizes 100,200,400
	@$(PY) -m bench.identity_supernode --sizes 1000,4000,16000 --protocol
	@$(PY) -m bench.identity_supernode --sizes 200,800 --protocol --state
	@$(PY) -m bench.identity_supernode --sizes 1000,4000,16000 --protocol --state --shared-homes
	@$(PY) -m bench.identity_supernode_flink --sizes 200,800

clean: reset
	rm -rf .venv .stack
