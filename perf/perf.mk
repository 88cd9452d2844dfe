# Benchmarks (included from the Makefile, which defines PY, STAMP and the `run` target).
#
# `make perf`: the mesh the way `make run` brings it up (a no-op for what is already up) for a short
# pass with its 100 % tracing, then the same mesh with tracing off (PERF_TOPOLOGY: the topology without
# its telemetry section) for the whole ghz sweep, then `make run`'s mesh again. Writes perf/results/*.json
# and perf/REPORT.md. PERF_ARGS="--quick" for a shorter sweep.

PERF_ARGS     ?=
PERF_SCALE_ARGS ?=
PERF_TOPOLOGY := build/perf/topology.yaml

.PHONY: perf perf-soak perf-report perf-scale

$(PERF_TOPOLOGY): mesh/topology.yaml perf/topology.py $(STAMP)/venv
	$(PY) -m perf.topology mesh/topology.yaml $@

perf: setup $(STAMP)/gen examples tools $(PERF_TOPOLOGY) ## ghz through the gateway: sweep, CPU per process, perf/REPORT.md (~6 min)
	$(MAKE) --no-print-directory run
	$(PY) -m perf.runner traced $(PERF_ARGS)
	$(MAKE) --no-print-directory run MESH_TOPOLOGY=$(PERF_TOPOLOGY)
	$(PY) -m perf.runner sweep $(PERF_ARGS)
	$(MAKE) --no-print-directory run

perf-soak: setup $(STAMP)/gen examples tools $(PERF_TOPOLOGY) ## 5 min of RunAgent at 500/s, RSS of every process (memory target)
	$(MAKE) --no-print-directory run MESH_TOPOLOGY=$(PERF_TOPOLOGY)
	$(PY) -m perf.runner soak $(PERF_ARGS)
	$(MAKE) --no-print-directory run

perf-report: ## re-render perf/REPORT.md from perf/results/ and perf/NOTES.md
	$(PY) -m perf.runner report

perf-scale: setup $(STAMP)/gen ## costs against their work (catalog, agents, watchers, module size): perf/SCALE.md (~15 min)
	$(PY) -m perf.scale $(PERF_SCALE_ARGS)
