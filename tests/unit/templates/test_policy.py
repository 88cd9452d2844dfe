from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from services.common.errors import InvalidArgument, PermissionDenied
from services.templates.manifest import parse_draft, resolve
from services.templates.policy import DEFAULT_POLICY_PATH, Policy, PolicyError

DIGEST = "ab" * 32


def manifest(policy: Policy, **fields: object):
    raw = json.dumps({"name": "agent", "version": "1.0.0", **fields}).encode()
    return resolve(parse_draft(raw), policy.default_limits, lambda n, v: None, DIGEST)


def test_denied_tool_names_the_rule() -> None:
    policy = Policy.load()
    with pytest.raises(PermissionDenied) as err:
        policy.check(manifest(policy, tools=["log", "shell"]))
    assert err.value.rule == "denied_tools.shell"


def test_unknown_tool_is_invalid() -> None:
    policy = Policy.load()
    with pytest.raises(InvalidArgument) as err:
        policy.check(manifest(policy, tools=["teleport"]))
    assert err.value.field == "tools[0]"


@pytest.mark.parametrize(
    ("limits", "rule"),
    [
        ({"memory_bytes": 1 << 30}, "limits.memory_bytes.max"),
        ({"timeout_ms": 1}, "limits.timeout_ms.min"),
        ({"fuel": 10**12}, "limits.fuel.max"),
    ],
)
def test_limit_bounds_name_the_rule(limits: dict, rule: str) -> None:
    policy = Policy.load()
    with pytest.raises(PermissionDenied) as err:
        policy.check(manifest(policy, limits=limits))
    assert err.value.rule == rule


def test_http_hosts_must_be_allowlisted(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    data["http_allowlist"] = ["127.0.0.1:8080"]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    policy = Policy.load(path)
    ok = manifest(policy, tools=["http_get"], http_hosts=["127.0.0.1:8080"])
    policy.check(ok)
    assert policy.allows_http(ok, "127.0.0.1:8080")
    assert not policy.allows_http(ok, "127.0.0.1:9090")
    with pytest.raises(PermissionDenied) as err:
        policy.check(manifest(policy, tools=["http_get"], http_hosts=["example.org:80"]))
    assert err.value.rule == "http_allowlist"
    with pytest.raises(InvalidArgument):
        policy.check(manifest(policy, http_hosts=["127.0.0.1:8080"]))


def test_malformed_policy_file_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("known_tools: [log]\n")
    with pytest.raises(PolicyError):
        Policy.load(path)
