# StockPulse: the two commands are `make up` (the whole pipeline) and `make test` (the suite).
# Both do their own set-up idempotently: a venv from requirements-lock.txt, Java, PostgreSQL.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
LOCK_HASH := $(shell sha1sum requirements-lock.txt | cut -c1-12)
STAMP := $(VENV)/.installed-$(LOCK_HASH)

.PHONY: up down services status test test-unit bench profile replay clean venv sysdeps browser jars cluster-up cluster-down cluster-status

up: venv sysdeps          ## start PostgreSQL, the broker, the consumer, the producer, Airflow and the dashboard
	$(PY) -m stockpulse.ops.stack up

down:                     ## stop everything `make up` started
	@if [ -x $(PY) ]; then $(PY) -m stockpulse.ops.stack down; fi

services: venv sysdeps    ## start only PostgreSQL and the broker (and create the topic)
	$(PY) -m stockpulse.ops.stack services

status: venv
	$(PY) -m stockpulse.ops.stack status

cluster-up: venv sysdeps jars  ## a local 3-node Kafka cluster and Spark standalone (master + 2 workers); then `. .state/cluster/cluster.env`
	$(PY) -m stockpulse.ops.cluster up

cluster-down:             ## stop the local cluster
	@if [ -x $(PY) ]; then $(PY) -m stockpulse.ops.cluster down; fi

cluster-status: venv
	$(PY) -m stockpulse.ops.cluster status

replay: venv              ## replay the CSV again into the running pipeline
	rm -f "$${STOCKPULSE_STATE_DIR:-.state}/run/producer.done"
	PRODUCER_RESUME=false $(PY) -m stockpulse.ops.stack up

test: venv sysdeps browser jars  ## the whole suite; starts its own services on free ports
	$(PY) -m pytest

test-unit: venv
	$(PY) -m pytest tests/unit

profile: venv sysdeps jars  ## where the streaming job's time goes (CPU per process, JVM and Python samples, each stage alone), JSON in bench/results/
	$(PY) bench/profile_pipeline.py
	$(PY) bench/bench_stages.py

bench: venv sysdeps jars  ## throughput (1M messages), latency, each stage against Spark's floor, the cluster and the dashboard on 5M rows, JSON in bench/results/
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_stages.py
	$(PY) bench/bench_dashboard.py
	$(PY) bench/bench_cluster.py

venv: $(STAMP)

$(STAMP): requirements-lock.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (3.11+)"; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
	  || { echo "need Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 2; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null \
	  || bash scripts/install_system_packages.sh python3-venv
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --python $(PY) -q -r requirements-lock.txt
	rm -f $(VENV)/.installed-*
	touch $@

sysdeps:                  ## a JDK (Java, and javac for the PostgreSQL writer) and Maven (PostgreSQL is found or installed by the stack itself)
	@command -v java >/dev/null && command -v javac >/dev/null || bash scripts/install_system_packages.sh openjdk-17-jdk-headless
	@command -v mvn >/dev/null || bash scripts/install_system_packages.sh maven

jars: venv sysdeps        ## resolve the Kafka broker, Spark's Kafka connector, Hadoop's S3A and the PostgreSQL JDBC driver from the Maven registry, compile the PostgreSQL writer (once, cached)
	$(PY) -m stockpulse.jars

browser:                  ## Debian's chromium for the browser tests (Playwright drives it; no browser download)
	@command -v chromium >/dev/null || bash scripts/install_system_packages.sh chromium

clean: down               ## stop, then remove the venv and all state (asks nothing: it is a clean)
	rm -rf $(VENV) .state
