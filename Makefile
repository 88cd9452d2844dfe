# Agent Factory — every target installs what it needs first, so a fresh machine needs only `make run` / `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(CURDIR)/build/bin
GEN    := build/gen
STAMP  := build/stamps
export PATH := $(CURDIR)/$(VENV)/bin:$(BIN):/usr/local/go/bin:$(PATH)
export GOBIN := $(BIN)
export GOFLAGS := -mod=mod

PROTOS := $(shell find protos -name '*.proto')

GHZ_VERSION     := v0.120.0
GRPCURL_VERSION := v1.9.3

.PHONY: inotify help setup gen lint test test-unit test-integration test-e2e run stop examples certs clean tools perf

help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP):
	@mkdir -p $@

# --- Python environment -------------------------------------------------------------------------
$(STAMP)/venv: requirements.txt pyproject.toml | $(STAMP)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# The `afctl` command (pyproject.toml [project.scripts]) into .venv/bin; editable, so it runs this tree.
	# (Build isolation fetches the setuptools pyproject.toml asks for: a new venv's own is too old.)
	$(PY) -m pip install -q --no-deps -e .
	# Make the repository and the generated stubs importable from the venv.
	echo "$(CURDIR)" > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/agentfactory-repo.pth
	echo "$(CURDIR)/$(GEN)" >> $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/agentfactory-repo.pth
	touch $@

# --- System packages (Debian) -------------------------------------------------------------------
# docker.io + debootstrap: `make images`; prometheus-alertmanager: where `make run`'s alerts go;
# rustc + libstd-rust-dev-wasm32: the Rust example agent (/usr/bin/rustc, target wasm32-wasi, std only).
APT_PACKAGES := clang lld wasi-libc prometheus supervisor docker.io debootstrap prometheus-alertmanager postgresql \
                rustc libstd-rust-dev-wasm32
# The stamp depends on the list itself (rewritten only when it changes), so a package added here is
# installed by the next make on every machine that already has the stamp.
APT_LIST := $(STAMP)/apt-packages
$(shell mkdir -p $(STAMP); echo '$(APT_PACKAGES)' | cmp -s - $(APT_LIST) || echo '$(APT_PACKAGES)' > $(APT_LIST))
$(STAMP)/apt: $(APT_LIST) | $(STAMP)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	touch $@

# --- Go tools (pinned, built from the Go module proxy) --------------------------------------------
$(BIN)/ghz:
	go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)
$(BIN)/grpcurl:
	go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
tools: $(BIN)/ghz $(BIN)/grpcurl ## build ghz and grpcurl from pinned versions

# Every Envoy watches its certificate and route directories with inotify (5-7 instances each). The
# common default of 128 instances per user runs out with `make run` and a test mesh up together, and
# Envoy then aborts at start-up; raise it when we may (root) and say so.
INOTIFY_MIN := 1024
inotify:
	@cur=$$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo $(INOTIFY_MIN)); \
	if [ "$$cur" -lt $(INOTIFY_MIN) ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "raising fs.inotify.max_user_instances $$cur -> $(INOTIFY_MIN) for Envoy"; \
	    sysctl -qw fs.inotify.max_user_instances=$(INOTIFY_MIN) || echo "could not raise it: keep few meshes up at once"; \
	  else echo "fs.inotify.max_user_instances=$$cur: a test mesh and make run together may exhaust it"; fi; \
	fi

setup: $(STAMP)/venv $(STAMP)/apt inotify ## install everything that is missing

# --- Contracts ----------------------------------------------------------------------------------
$(STAMP)/gen: $(PROTOS) $(STAMP)/venv
	rm -rf $(GEN) && mkdir -p $(GEN)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=$(GEN) --pyi_out=$(GEN) --grpc_python_out=$(GEN) $(PROTOS)
	buf build -o build/agentfactory.protoset
	touch $@
gen: $(STAMP)/gen ## generate Python stubs and the grpcurl protoset from protos/

PY_DIRS = $(wildcard services tests mesh gateway perf examples afctl)
lint: $(STAMP)/gen ## buf lint + buf format + buf breaking (vs main) + ruff (check and format) + mypy (strict)
	buf lint
	buf format --diff --exit-code
	# The contracts in the work tree against main's (FILE rules): an edit that would break a released
	# client fails here before it is committed or merged.
	@if git rev-parse --verify -q main >/dev/null; then echo "buf breaking --against .git#branch=main"; \
	  buf breaking --against '.git#branch=main'; else echo "no local main branch: buf breaking skipped"; fi
	$(PY) -m ruff check $(PY_DIRS)
	$(PY) -m ruff format --check $(PY_DIRS)
	# Strict over services/ and afctl/ (pyproject.toml [tool.mypy]); protobuf types from build/gen's .pyi files.
	$(PY) -m mypy

# Everything the test suite needs: stubs, example agents, certificates, ghz/grpcurl, the example clients.
TEST_DEPS = $(STAMP)/gen examples tools $(STAMP)/clients

# pytest exits 5 when it collected nothing: that must never pass as green.
define run_pytest
	@set +e; $(PY) -m pytest $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc
endef

test: setup $(TEST_DEPS) lint ## set up what is missing, then lint and run the whole suite
	$(call run_pytest,tests --durations=15)

test-unit: setup $(TEST_DEPS) ## unit tests only
	$(call run_pytest,tests/unit)

test-integration: setup $(TEST_DEPS) ## integration tests (real processes)
	$(call run_pytest,tests/integration)

test-e2e: setup $(TEST_DEPS) ## end-to-end tests through the mesh
	$(call run_pytest,tests/e2e)

clean: ## remove everything built
	rm -rf build .pytest_cache

include examples/examples.mk
include mesh/mesh.mk
include perf/perf.mk
include helm/helm.mk
include clients/clients.mk
include images/images.mk

# --- The local platform -----------------------------------------------------------------------
# BACKEND=sqlite (default): the embedded stores under var/data, no database process. BACKEND=postgres:
# supervisord also runs a local PostgreSQL (data in var/postgres, mesh/pglocal.py) that the registry and
# both scheduler colors use, each service with its own role and database (docs/database.md).
BACKEND ?= sqlite
ifeq ($(filter $(BACKEND),sqlite postgres),)
$(error BACKEND=$(BACKEND): expected sqlite or postgres)
endif
DB_ARGS := $(if $(filter postgres,$(BACKEND)),--postgres $(MESH_VAR)/postgres)

run: setup $(STAMP)/gen examples tools mesh ## bring the whole mesh up locally, publish the examples, run an agent (BACKEND=postgres: on PostgreSQL)
	$(PY) -m observability.render --out build/observability --alertmanager-addr 127.0.0.1:9093
	$(PY) -m mesh.supervisor $(MESH_ARGS) --out-dir $(MESH_DIR) --var-dir $(MESH_VAR) up $(DB_ARGS) \
		--prometheus build/observability/prometheus.yml --trace-sink --alertmanager build/observability/alertmanager.yml
	$(PY) -m afctl.quickstart

stop: ## stop everything `make run` started (its PostgreSQL too); returns once all of it has exited
	$(PY) -m mesh.supervisor $(MESH_ARGS) --out-dir $(MESH_DIR) --var-dir $(MESH_VAR) down
