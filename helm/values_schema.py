"""Write helm/agentfactory/values.schema.json (Helm checks values against it on lint, template,
install and upgrade). Kept as Python so the repeated shapes (a service, resources, a color) are
written once; `--check` fails when the committed JSON is stale (make helm-lint, tests/integration/helm).

    python helm/values_schema.py [--check]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "agentfactory" / "values.schema.json"
WORKLOADS = ["registry", "signer", "executor-blue", "executor-green", "scheduler-blue", "scheduler-green", "gateway"]


def obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """An object whose keys are exactly these: a typo is an error, not a silently ignored value."""
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        schema["required"] = required
    return schema | extra


STR = {"type": "string"}
BOOL = {"type": "boolean"}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
REPLICAS = {"type": "integer", "minimum": 0, "maximum": 1000}
PERCENT_INT = {"type": "integer", "minimum": 0, "maximum": 100}
# `--set x=2.5` reaches the chart as a string (Helm parses only integers and booleans): accept a
# decimal string in range too.
PERCENT = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": 100},
        {"type": "string", "pattern": r"^(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)$"},
    ]
}
# Kubernetes quantities: "100m", "1", 0.5, "256Mi", "1Gi".
QUANTITY = {"type": ["string", "number"], "pattern": r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"}
DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}
IMAGE_TAG = {"type": "string", "pattern": r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"}
IMAGE = obj({"repository": {"type": "string", "minLength": 1}, "tag": IMAGE_TAG}, ["repository"])
RULES = {"type": "array", "items": {"type": "object"}}  # NetworkPolicy peers/rules: Kubernetes validates them
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
RESOURCE_LIST = obj({"cpu": QUANTITY, "memory": QUANTITY, "ephemeral-storage": QUANTITY})
RESOURCES = obj({"requests": RESOURCE_LIST, "limits": RESOURCE_LIST})
ENV = {
    "type": "object",
    "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}


def whole(low: int, high: int) -> dict[str, Any]:
    """A whole-number setting: an integer in range, or digits (a quoted value; the service checks its range)."""
    return {
        "anyOf": [{"type": "integer", "minimum": low, "maximum": high}, {"type": "string", "pattern": r"^[0-9]{1,15}$"}]
    }


def seconds(low: float, high: float) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "number", "minimum": low, "maximum": high},
            {"type": "string", "pattern": r"^[0-9]{1,6}(\.[0-9]+)?$"},
        ]
    }


# The executor's settings whose form the chart can check (ranges as in services/executor/settings.py): a
# typo fails `helm lint` instead of a crash-looping pod (the executor exits 2 on a bad value).
EXECUTOR_ENV = ENV | {
    "properties": {
        "AF_EXECUTOR_SCRATCH_BYTES": whole(64 * 1024, 1 << 40),
        "AF_EXECUTOR_SCRATCH_ENTRIES": whole(2, 1 << 20),
        "AF_EXECUTOR_COMPILE_SECONDS": seconds(0.1, 3600),
        "AF_EXECUTOR_COMPILE_CPU_SECONDS": whole(1, 3600),
        "AF_EXECUTOR_COMPILE_MEMORY_BYTES": whole(256 * 1024 * 1024, 1 << 40),
        "AF_EXECUTOR_MAX_DESCRIPTORS": whole(8, 65536),
    }
}
# A Secret's data key (Kubernetes: [-._a-zA-Z0-9]+, at most 253 characters).
SECRET_KEY = {"type": "string", "pattern": r"^[-._a-zA-Z0-9]{1,253}$"}
PERSISTENCE = obj({"enabled": BOOL, "size": QUANTITY, "storageClass": STR})
INT_OR_PERCENT = {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^[0-9]{1,3}%$"}]}
PDB = {
    "oneOf": [
        obj({"maxUnavailable": INT_OR_PERCENT}, ["maxUnavailable"]),
        obj({"minAvailable": INT_OR_PERCENT}, ["minAvailable"]),
    ]
}
WEIGHTS = obj({"blue": PERCENT_INT, "green": PERCENT_INT}, ["blue", "green"])
COLOR = obj(
    {
        "replicas": REPLICAS,
        "tag": IMAGE_TAG,
        "minReplicas": {"type": "integer", "minimum": 1},
        "maxReplicas": {"type": "integer", "minimum": 1},
    }
)
COLORS = obj({"blue": COLOR, "green": COLOR})


def service(**more: Any) -> dict[str, Any]:
    props = {
        "replicas": REPLICAS,
        "image": IMAGE,
        "env": ENV,
        "resources": RESOURCES,
        "persistence": PERSISTENCE,
        "extraEgress": RULES,
        "podDisruptionBudget": PDB,
    }
    return obj(props | more)


def schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft-07/schema#",
        "title": "Agent Factory chart values",
        **obj(
            {
                "clusterDomain": {"type": "string", "pattern": r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$"},
                "images": obj(
                    {
                        "registry": {"type": "string", "pattern": r"^(|.*/)$"},
                        "tag": IMAGE_TAG,
                        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                        "pullSecrets": {"type": "array", "items": obj({"name": {"type": "string", "minLength": 1}})},
                    }
                ),
                "envoy": obj(
                    {
                        "image": IMAGE,
                        "concurrency": {"type": "integer", "minimum": 1, "maximum": 64},
                        "logLevel": {"enum": ["trace", "debug", "info", "warning", "error", "critical", "off"]},
                        "resources": RESOURCES,
                    }
                ),
                "podSecurity": obj(
                    {
                        "runAsUser": {"type": "integer", "minimum": 1},
                        "runAsGroup": {"type": "integer", "minimum": 1},
                        "fsGroup": {"type": "integer", "minimum": 1},
                    }
                ),
                "tracing": obj({"otlpHost": STR, "samplingPercent": PERCENT}),
                "certificates": obj(
                    {
                        "trustBundle": STR,
                        "jwks": STR,
                        "workloads": {
                            "type": "object",
                            "propertyNames": {"enum": WORKLOADS},
                            "additionalProperties": obj({"cert": STR, "key": STR}, ["cert", "key"]),
                        },
                        "certManager": obj(
                            {
                                "enabled": BOOL,
                                "issuerRef": obj(
                                    {"name": STR, "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": STR}
                                ),
                                "caSecret": STR,
                                "duration": DURATION,
                                "renewBefore": DURATION,
                            }
                        ),
                    }
                ),
                "networkPolicy": obj(
                    {"enabled": BOOL, "gatewayFrom": RULES, "metricsFrom": RULES, "extraEgress": RULES}
                ),
                "podDisruptionBudget": PDB,
                "database": obj(
                    {
                        # A Kubernetes object name (RFC 1123 subdomain), or "" for the embedded stores.
                        "existingSecret": {"type": "string", "pattern": r"^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?)?$"},
                        "keys": obj({"registry": SECRET_KEY, "scheduler": SECRET_KEY}, ["registry", "scheduler"]),
                        "caKey": {"anyOf": [{"const": ""}, SECRET_KEY]},
                        "egress": RULES,
                    }
                ),
                "registry": service(),
                "signer": service(vaultTokenSecret=STR),
                "executor": service(
                    env=EXECUTOR_ENV,
                    weights=WEIGHTS,
                    colors=COLORS,
                    autoscaling=obj(
                        {
                            "enabled": BOOL,
                            "minReplicas": {"type": "integer", "minimum": 1},
                            "maxReplicas": {"type": "integer", "minimum": 1},
                            "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1, "maximum": 100},
                        }
                    ),
                ),
                "scheduler": service(weights=WEIGHTS, colors=COLORS),
                "gateway": obj(
                    {
                        "replicas": REPLICAS,
                        "service": obj(
                            {
                                "type": {"enum": ["LoadBalancer", "NodePort", "ClusterIP"]},
                                "port": PORT,
                                "annotations": LABELS,
                                "loadBalancerSourceRanges": {"type": "array", "items": STR},
                            }
                        ),
                        "resources": RESOURCES,
                        "podDisruptionBudget": PDB,
                    }
                ),
                "monitoring": obj(
                    {
                        "podMonitor": obj({"enabled": BOOL, "interval": DURATION, "labels": LABELS}),
                        "prometheusRule": obj({"enabled": BOOL, "labels": LABELS}),
                        "dashboards": obj({"enabled": BOOL, "labels": LABELS, "annotations": LABELS}),
                    }
                ),
                "tests": obj({"clientSecret": STR, "image": IMAGE, "template": {"type": "string", "minLength": 1}}),
            }
        ),
    }


def render() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        if not OUT.exists() or OUT.read_text() != render():
            print(f"{OUT} is stale: run `python helm/values_schema.py`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
