# Mesh targets: local CA, Envoy configs, supervision, blue/green weights, chaos.
# Included from the Makefile (which defines PY and STAMP). Output lands in build/ (certs, configs)
# and var/ (supervisor socket, logs, service data); neither is ever committed.

MESH_TOPOLOGY ?= mesh/topology.yaml
CERTS_DIR     ?= build/certs
MESH_DIR      ?= build/mesh
MESH_VAR      ?= var
MESH_ARGS     := --topology $(MESH_TOPOLOGY)

.PHONY: certs certs-rotate mesh mesh-validate mesh-up mesh-down mesh-status mesh-weights mesh-token mesh-chaos test-mesh

certs: $(STAMP)/venv ## local CA, one cert per Envoy, client certs per role, JWT key (idempotent)
	$(PY) -m mesh.ca $(MESH_ARGS) --certs-dir $(CERTS_DIR) issue

certs-rotate: $(STAMP)/venv ## re-issue workload certs in place; running Envoys reload them (IDS="registry signer" for some)
	$(PY) -m mesh.ca $(MESH_ARGS) --certs-dir $(CERTS_DIR) rotate $(IDS)

mesh: certs ## render every Envoy config (sidecars, gateway, RDS/SDS files) and supervisord.conf
	$(PY) -m mesh.render $(MESH_ARGS) --certs-dir $(CERTS_DIR) --out-dir $(MESH_DIR)
	$(PY) -m mesh.supervisor $(MESH_ARGS) --out-dir $(MESH_DIR) --var-dir $(MESH_VAR) render $(if $(ENVOY_ONLY),--envoy-only)

mesh-validate: certs ## render, then `envoy --mode validate` every config (routes included)
	$(PY) -m mesh.render $(MESH_ARGS) --certs-dir $(CERTS_DIR) --out-dir $(MESH_DIR) --validate

mesh-up: mesh ## start (or update) supervisord with every Envoy and service; ENVOY_ONLY=1 for Envoys alone
	$(PY) -m mesh.supervisor $(MESH_ARGS) --out-dir $(MESH_DIR) --var-dir $(MESH_VAR) up $(if $(ENVOY_ONLY),--envoy-only)

mesh-down: ## stop supervisord and everything it runs; returns once all of it has exited
	$(PY) -m mesh.supervisor $(MESH_ARGS) --out-dir $(MESH_DIR) --var-dir $(MESH_VAR) down

mesh-status: ## what supervisord is running
	$(PY) -m mesh.supervisor $(MESH_ARGS) --out-dir $(MESH_DIR) --var-dir $(MESH_VAR) status

mesh-weights: ## shift blue/green live: make mesh-weights SVC=scheduler BLUE=90 GREEN=10 (no args: show)
	$(PY) -m mesh.weights $(MESH_ARGS) --out-dir $(MESH_DIR) --wait 10 $(SVC) $(if $(SVC),blue=$(BLUE) green=$(GREEN))

mesh-token: ## print a gateway JWT: make mesh-token ROLE=admin [SUBJECT=alice TTL=3600]
	@$(PY) -m mesh.ca $(MESH_ARGS) --certs-dir $(CERTS_DIR) token --role $(or $(ROLE),viewer) \
		$(if $(SUBJECT),--subject $(SUBJECT)) $(if $(TTL),--ttl $(TTL))

mesh-chaos: ## fault injection at run time: make mesh-chaos ID=executor-green ACTION=abort|delay|off PERCENT=50
	$(PY) -m mesh.chaos $(MESH_ARGS) $(ID) $(ACTION) $(PERCENT)

test-mesh: $(STAMP)/venv ## mesh unit + integration tests (real Envoy, real supervisord)
	$(PY) -m pytest tests/unit/mesh tests/integration/mesh
