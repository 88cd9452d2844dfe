"""An alert fired by a real Prometheus reaches the receiver through a real Alertmanager, with the
configs `make run` renders (observability/alerting.py): Prometheus' `alerting` section, the route
by severity, the webhook receiver (observability/alert_sink.py, run in process here).

The alert is a test rule that fires at once (`vector(1)`, severity page), next to the repository's
rules: what is checked is the path an alert takes, not a threshold (promtool tests those).
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from observability.alert_sink import AlertSink
from observability.alerting import alertmanager_config, prometheus_alerting, write_alertmanager
from tests.harness import eventually, exited, free_port
from tests.harness_prometheus import PrometheusProcess

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
PROBE_RULE = {
    "groups": [
        {
            "name": "alert-path-probe",
            "rules": [
                {
                    "alert": "AlertPathProbe",
                    "expr": "vector(1)",
                    "labels": {"severity": "page", "service": "probe"},
                    "annotations": {"summary": "the alert path works", "runbook_url": "https://example.test/runbook"},
                }
            ],
        }
    ]
}


@pytest.fixture
def sink() -> Iterator[AlertSink]:
    s = AlertSink("127.0.0.1:0").start()
    yield s
    s.stop()


@pytest.fixture
def alertmanager(tmp_path: Path, sink: AlertSink) -> Iterator[str]:
    # group_wait short so the first notification leaves at once; the route itself is make run's.
    config = write_alertmanager(alertmanager_config(sink.url, group_wait="1s"), tmp_path / "am")
    addr = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "alertmanager.log").open("ab")
    proc = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address={addr}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://{addr}/-/ready", timeout=5) as reply:
                    return reply.status == 200
            except OSError:
                return False

        # No time bound (pytest's timeout ends a hang); at once a failure with its log if it exits.
        logs = lambda: (tmp_path / "alertmanager.log").read_text(errors="replace")  # noqa: E731
        eventually(ready, "alertmanager ready", broken=exited(proc, logs), interval=0.1)
        yield addr
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_a_firing_alert_reaches_the_page_receiver(tmp_path: Path, sink: AlertSink, alertmanager: str) -> None:
    # Prometheus resends a firing alert every minute by default; the first send can race its
    # discovery of the Alertmanager, so resend every second here instead of waiting a minute.
    prom = PrometheusProcess(tmp_path / "prom", [], extra_args=["--rules.alert.resend-delay=1s"])
    config = yaml.safe_load(prom.config_path.read_text())
    config["alerting"] = prometheus_alerting(alertmanager)
    prom.config_path.write_text(yaml.safe_dump(config))
    (prom.config_path.parent / "rules" / "probe.yml").write_text(yaml.safe_dump(PROBE_RULE))
    with prom:
        # No time bound: the rule fires and Prometheus sends it eventually (pytest's timeout ends a hang).
        eventually(sink.alerts, "a notification at the receiver", broken=exited(prom.proc, prom.logs), interval=0.2)
    alerts = sink.alerts()
    probe = [a for a in alerts if a["labels"]["alertname"] == "AlertPathProbe"]
    assert probe and probe[0]["status"] == "firing", alerts
    assert probe[0]["annotations"]["runbook_url"] == "https://example.test/runbook"
    # Routed by severity: a page goes to the "page" receiver.
    assert any(n["receiver"] == "page" for n in sink.notifications), sink.notifications


def test_the_sink_refuses_what_is_not_a_notification(sink: AlertSink) -> None:
    for body, code in ((b"not json", 400), (b"", 400)):
        req = urllib.request.Request(sink.url, data=body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == code
    assert sink.alerts() == []
