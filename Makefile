# Developer entry points. The local stack (LocalStack + a search engine, no Docker) is
# managed by scripts/stack.sh; F4A_ENGINE picks the engine: opensearch (default, a real
# OpenSearch 2.19 node), opensearch3 (OpenSearch 3.x), elasticsearch (Elasticsearch 9.x),
# elasticsearch8 (Elasticsearch 8.19), osmem (the in-memory double).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

CARGO ?= cargo
# Adjust test selection/threads here (or: make test TEST_CMD='cargo test foo').
TEST_CMD ?= $(CARGO) test --all-targets -- --test-threads=4
STACK := scripts/stack.sh

.PHONY: stack stack-stop build test test-e2e test-deploy lint demo bench clean-stack

stack:
	$(STACK) install
	$(STACK) start

stack-stop:
	$(STACK) stop

build:
	$(CARGO) build

# Tests use the shared LocalStack and the shared search node (own index names per test);
# tests that break or restart their cluster start private nodes (tests/common/search.rs).
test:
	$(STACK) start
	eval "$$($(STACK) env)" && $(TEST_CMD)
	$(MAKE) test-deploy

# tests/e2e.rs alone, e.g. against OpenSearch 3.x or Elasticsearch 9.x:
# make test-e2e F4A_ENGINE=opensearch3 (or elasticsearch, elasticsearch8)
test-e2e:
	$(STACK) start
	eval "$$($(STACK) env)" && $(CARGO) test --test e2e -- --test-threads=4

# Dockerfile, ecs-task.json, deploy/cloudformation.yaml, docker-compose.yml (tests/deploy, pytest in
# the stack venv), including the podman container test (F4A_SKIP_CONTAINER_TEST=1 skips it), and
# the self-tests of the SigV4-verifying proxy and the ECS credentials endpoint (tests/tools).
test-deploy:
	$(STACK) start
	$(CARGO) build
	eval "$$($(STACK) env)" && "$$F4A_VENV/bin/python" -m pytest -q -rs tests/deploy tests/tools

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

demo:
	scripts/demo.sh

bench:
	@if [[ -x scripts/bench.sh ]]; then scripts/bench.sh; else echo "scripts/bench.sh not there yet"; fi

# Stop the stack and delete its cache (venv, Maven repository, OpenSearch launchers and data,
# logs, LocalStack volume).
clean-stack:
	$(STACK) stop
	rm -rf "$${F4A_CACHE:-$$HOME/.cache/f4a-indexer}"
