# Helm chart targets. Included from the Makefile (which defines PY, BIN, STAMP and exports GOBIN).
# helm itself is built from the pinned tag with `go install` (about 2.5 min on 2 cores with a cold
# module cache; Debian ships no helm).

HELM_VERSION  := v3.22.0
HELM          := $(BIN)/helm
CHART         := helm/agentfactory
# The Kubernetes version the chart is rendered, linted and schema-validated against.
HELM_KUBE     := 1.34.0
HELM_PROFILES := values.yaml values-prod.yaml values-bluegreen.yaml values-postgres.yaml

.PHONY: helm helm-files helm-lint helm-template test-helm

$(BIN)/helm-$(HELM_VERSION):
	go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	touch $@
$(HELM): $(BIN)/helm-$(HELM_VERSION)
helm: $(HELM) ## build the pinned helm into build/bin (go install)

helm-files: $(STAMP)/venv ## regenerate the chart's Envoy configs, rules, dashboards and values schema (commit the result)
	$(PY) -m mesh.kubernetes
	$(PY) -m observability.chart
	$(PY) helm/values_schema.py

helm-lint: $(HELM) $(STAMP)/venv ## helm lint --strict on every values profile; the chart's Envoy files are fresh
	$(PY) -m mesh.kubernetes --check
	$(PY) -m observability.chart --check
	$(PY) helm/values_schema.py --check
	for p in $(HELM_PROFILES); do \
	  $(HELM) lint --strict --kube-version $(HELM_KUBE) $(CHART) -f $(CHART)/$$p || exit 1; done

helm-template: $(HELM) ## render the chart: make helm-template [VALUES=helm/agentfactory/values-prod.yaml]
	$(HELM) template agentfactory $(CHART) --kube-version $(HELM_KUBE) --namespace agentfactory $(if $(VALUES),-f $(VALUES))

test-helm: $(HELM) $(STAMP)/venv ## chart tests: schemas, envoy --mode validate, security properties
	$(PY) -m pytest tests/integration/helm

# The suite renders the chart with the real helm: build it first (pinned, once).
test test-integration: $(HELM)
