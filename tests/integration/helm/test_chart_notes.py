"""NOTES.txt as `helm install` prints it: what the release keeps on volumes and what a restart would lose.

`helm template` never renders NOTES.txt and `helm install --dry-run` needs a cluster, so the test renders
a copy of the chart in which one extra template puts NOTES.txt, through `tpl`, into a ConfigMap.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.integration.helm.conftest import CHART, KUBE_VERSION, NAMESPACE, helm

PROBE = """apiVersion: v1
kind: ConfigMap
metadata: {name: rendered-notes}
data:
  notes: {{ tpl (.Files.Get "notes-under-test.txt") . | quote }}
"""


@pytest.fixture(scope="module")
def chart_with_notes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chart = tmp_path_factory.mktemp("notes") / "agentfactory"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes-under-test.txt")
    (chart / "templates" / "zz-notes-probe.yaml").write_text(PROBE)
    return chart


def _notes(chart: Path, *sets: str) -> str:
    args = [x for s in sets for x in ("--set", s)]
    proc = helm(
        "template", "af", chart, "-n", NAMESPACE, "--kube-version", KUBE_VERSION,
        "--show-only", "templates/zz-notes-probe.yaml", *args,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    notes: str = yaml.safe_load(proc.stdout)["data"]["notes"]
    return notes


def test_the_defaults_keep_every_state_on_a_volume_and_warn_of_nothing(chart_with_notes: Path) -> None:
    notes = _notes(chart_with_notes)
    assert "embedded SQLite on PersistentVolumeClaims" in notes
    assert "Signer keys and key ledger:\n  on a PersistentVolumeClaim (signer-data" in notes
    assert "WARNING" not in notes


def test_a_signer_without_a_volume_is_warned_of_for_each_backend(chart_with_notes: Path) -> None:
    local = _notes(chart_with_notes, "signer.persistence.enabled=false")
    assert "WARNING: the signer without persistence: a restarted signer pod loses its keys" in local
    vault = _notes(chart_with_notes, "signer.persistence.enabled=false", "signer.env.AF_SIGNER_BACKEND=vault")
    assert "WARNING: the signer without persistence: a restarted signer pod forgets its key ledger" in vault
    assert "loses its keys" not in vault
