"""Reflection through the gateway as grpcurl and ghz users expect: the whole API listed, every method
described, both protocol versions, ghz working from reflection alone, and the same JSON as the protoset."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mesh import REPO
from mesh.methods import contracts
from tests.harness_mesh import E2EMesh

GRPCURL = str(REPO / "build/bin/grpcurl")
GHZ = str(REPO / "build/bin/ghz")
API = sorted(f"agentfactory.{svc}.v1.{svc.capitalize()}Service" for svc in contracts())
METHODS = sorted(m.path[1:].replace("/", ".") for svc in contracts().values() for m in svc.values())


def grpcurl(mesh: E2EMesh, *args: str, role: str = "viewer") -> subprocess.CompletedProcess[str]:
    tls = mesh.tls(role)
    cmd = [GRPCURL, "-cacert", str(tls.ca), "-cert", str(tls.cert), "-key", str(tls.key), *args]
    # Describe and list go one after another: the mesh sees them as a user's session, not a load test.
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)


def test_list_shows_every_service(e2e_mesh: E2EMesh) -> None:
    done = grpcurl(e2e_mesh, e2e_mesh.gateway, "list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == sorted(
        [
            *API,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
    )


@pytest.mark.parametrize("method", METHODS)
def test_describe_every_method(e2e_mesh: E2EMesh, method: str) -> None:
    done = grpcurl(e2e_mesh, e2e_mesh.gateway, "describe", method)
    assert done.returncode == 0, done.stderr
    assert f"{method} is a method:" in done.stdout and "rpc " in done.stdout


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_both_reflection_versions_answer(e2e_mesh: E2EMesh, version: str) -> None:
    service = f"grpc.reflection.{version}.ServerReflection"
    done = grpcurl(e2e_mesh, "-d", '{"list_services": ""}', e2e_mesh.gateway, f"{service}/ServerReflectionInfo")
    assert done.returncode == 0, done.stderr
    names = [s["name"] for s in json.loads(done.stdout)["listServicesResponse"]["service"]]
    assert set(API) <= set(names)


def test_json_from_reflection_matches_the_protoset(e2e_mesh: E2EMesh) -> None:
    args = ["-d", '{"name": "echo-upper"}', e2e_mesh.gateway, "agentfactory.registry.v1.RegistryService/GetTemplate"]
    by_reflection = grpcurl(e2e_mesh, *args)
    by_protoset = grpcurl(e2e_mesh, "-protoset", str(REPO / "build/agentfactory.protoset"), *args)
    assert by_reflection.returncode == 0 and by_protoset.returncode == 0, (by_reflection.stderr, by_protoset.stderr)
    assert json.loads(by_reflection.stdout) == json.loads(by_protoset.stdout)


def test_ghz_from_reflection_alone(e2e_mesh: E2EMesh, tmp_path: Path) -> None:
    tls = e2e_mesh.tls("operator")
    cmd = [
        GHZ,
        *("--cacert", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key)),
        *("--call", "agentfactory.scheduler.v1.SchedulerService.RunAgent"),
        *("-d", '{"template_name": "echo-upper", "input": "aGVsbG8="}'),
        *("-n", "10", "-c", "2", "--format", "json"),
        e2e_mesh.gateway,
    ]
    # From an empty directory: no .proto file, no protoset, only what reflection serves.
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["count"] == 10 and report["statusCodeDistribution"] == {"OK": 10}, report


def test_buf_curl_with_the_grpc_protocol(e2e_mesh: E2EMesh, tmp_path: Path) -> None:
    tls = e2e_mesh.tls("viewer")
    cmd = [
        str(REPO / ".venv/bin/buf"),
        *("curl", "--protocol", "grpc", "--cacert", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key)),
        *("--data", '{"name": "echo-upper"}'),
        f"https://{e2e_mesh.gateway}/agentfactory.registry.v1.RegistryService/GetTemplate",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["template"]["manifest"]["name"] == "echo-upper"
