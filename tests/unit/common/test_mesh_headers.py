"""The headers the services read are the ones the mesh sets, routes on and strips: checked on the
gateway's Envoy config as rendered from the repository's topology (parsed, not grepped), in the order
Envoy applies its filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh.kubernetes import walk_dicts
from mesh.routes import COLOR_HEADER
from services.common import mesh_headers
from tests.rendered_mesh import render_repo_topology

HEADER_MUTATION = "envoy.filters.http.header_mutation"
JWT_AUTHN = "envoy.filters.http.jwt_authn"


@pytest.fixture(scope="module")
def gateway_filters(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The gateway listener's HTTP filters, in order."""
    rendered = render_repo_topology(Path(tmp_path_factory.mktemp("rendered")))
    doc = yaml.safe_load(rendered.configs["gateway"].read_text())
    (listener,) = [li for li in doc["static_resources"]["listeners"] if li["name"] == "gateway"]
    filters: list[dict[str, Any]] = []
    for chain in listener["filter_chains"]:
        for network_filter in chain["filters"]:
            filters.extend(network_filter.get("typed_config", {}).get("http_filters", []))
    return filters


def _one(filters: list[dict[str, Any]], name: str) -> tuple[int, dict[str, Any]]:
    found = [(i, f) for i, f in enumerate(filters) if f["name"] == name]
    assert len(found) == 1, f"{name}: {len(found)} filters"
    return found[0]


def test_the_mesh_routes_on_the_color_header_the_services_send() -> None:
    assert COLOR_HEADER == mesh_headers.COLOR


def test_the_gateway_strips_what_only_the_mesh_may_set_then_names_the_end_user(
    gateway_filters: list[dict[str, Any]],
) -> None:
    index, mutation = _one(gateway_filters, HEADER_MUTATION)
    assert index == 0, "the strip must come before every filter that reads or sets these headers"
    (mutations,) = [d["request_mutations"] for d in walk_dicts(mutation) if "request_mutations" in d]
    removed = [m["remove"] for m in mutations if "remove" in m]
    appended = [m["append"] for m in mutations if "append" in m]
    assert set(removed) == {mesh_headers.PRINCIPAL, mesh_headers.JWT_SUBJECT, mesh_headers.FORWARDED_BY}
    assert all("remove" in m for m in mutations[: len(removed)]), "every removal before the first append"
    assert appended == [
        {
            "header": {"key": mesh_headers.PRINCIPAL, "value": "%DOWNSTREAM_PEER_URI_SAN%"},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
    ]


def test_the_jwt_subject_is_set_after_the_strip(gateway_filters: list[dict[str, Any]]) -> None:
    index, jwt = _one(gateway_filters, JWT_AUTHN)
    assert index > _one(gateway_filters, HEADER_MUTATION)[0]
    claims = [c for d in walk_dicts(jwt) for c in d.get("claim_to_headers", [])]
    assert claims == [{"header_name": mesh_headers.JWT_SUBJECT, "claim_name": "sub"}]
