# Benchmarks (included from the Makefile, which defines PY, STAMP and the `run` target).
#
# `make perf`: the mesh the way `make run` brings it up (a no-op for what is already up) for a short
# pass with its 100 % tracing, then the same mesh with tracing off (PERF_TOPOLOGY: the topology without
# its telemetry section) for the whole ghz sweep, then `make run`'s mesh again. Writes perf/results/*.json
# and perf/REPORT.md. PERF_ARGS="--quick" for a shorter sweep. `make perf BACKEND=postgres` runs the same
# sweep with the registry and schedulers on PostgreSQL (REPORT.md names the backend).
#
# `make perf-backends`: the embedded mode against PostgreSQL, alternating rounds (PERF_BACKEND_ROUNDS), each
# on a freshly started benchmark mesh, then a scheduler's SIGKILL on PostgreSQL; perf/results/backends/
# (REPORT.md there), analysed in perf/BACKENDS.md. Stops the mesh at the end, and on a failure.

PERF_ARGS     ?=
PERF_SCALE_ARGS ?=
PERF_BACKEND_ROUNDS ?= sqlite postgres sqlite postgres
PERF_TOPOLOGY := build/perf/topology.yaml

.PHONY: perf perf-soak perf-report perf-scale perf-backends

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

perf-backends: setup $(STAMP)/gen examples tools $(PERF_TOPOLOGY) ## SQLite vs PostgreSQL (ABAB): RunAgent, CreateAgent, take-over after SIGKILL (~5 min)
	$(PY) -m perf.backends clean
	@n=0; for b in $(PERF_BACKEND_ROUNDS); do n=$$((n + 1)); \
	  $(MAKE) --no-print-directory stop && \
	  $(MAKE) --no-print-directory run BACKEND=$$b MESH_TOPOLOGY=$(PERF_TOPOLOGY) && \
	  $(PY) -m perf.backends measure $$b $$n $(PERF_ARGS) || { $(MAKE) --no-print-directory stop; exit 1; }; \
	done
	$(MAKE) --no-print-directory run BACKEND=postgres MESH_TOPOLOGY=$(PERF_TOPOLOGY)
	$(PY) -m perf.backends takeover || { $(MAKE) --no-print-directory stop; exit 1; }
	$(PY) -m perf.backends report
	$(MAKE) --no-print-directory stop
