"""The performance gate's own mesh: `make run`'s system traced as the Helm chart traces a cluster.

`make run` (and the shared e2e mesh) trace every request, which about doubles the CPU of a call
(perf/REPORT.md, "tracing on/off"). The gate's promise is about the product as a platform team
deploys it, so its mesh samples traces at the chart's default (`tracing.samplingPercent` in
helm/agentfactory/values.yaml), read from the chart so the two cannot drift apart. The package
sorts first under tests/e2e, so the gate runs while no other mesh of the suite is up.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import _MESH
from tests.harness_mesh import E2EMesh, start_mesh

CHART_VALUES = Path(__file__).resolve().parents[3] / "helm" / "agentfactory" / "values.yaml"


def chart_sampling_percent() -> float:
    return float(yaml.safe_load(CHART_VALUES.read_text())["tracing"]["samplingPercent"])


@pytest.fixture(scope="package")
def gate_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EMesh]:
    mesh = start_mesh(tmp_path_factory.mktemp("gate-mesh"), sampling_percent=chart_sampling_percent())
    _MESH.append(mesh)
    try:
        yield mesh
    finally:
        _MESH.remove(mesh)
        mesh.stop()
