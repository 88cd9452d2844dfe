# Benchmarks (included from the Makefile, which defines PY, STAMP and the `run` target).
# `make perf` brings the mesh up the way `make run` does (a no-op for what is already up), then runs
# the ghz sweep and writes perf/results/*.json and perf/REPORT.md. PERF_ARGS="--quick" for a short one.

PERF_ARGS ?=

.PHONY: perf perf-soak perf-report

perf: run ## benchmark through the gateway with ghz: sweep, CPU per process, perf/REPORT.md (~8 min)
	$(PY) -m perf.runner sweep $(PERF_ARGS)

perf-soak: run ## 5 minutes of RunAgent at 500/s, RSS of every process sampled (memory target)
	$(PY) -m perf.runner soak $(PERF_ARGS)

perf-report: ## re-render perf/REPORT.md from perf/results/ and perf/NOTES.md
	$(PY) -m perf.runner report
