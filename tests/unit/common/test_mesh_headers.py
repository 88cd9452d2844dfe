"""The headers the services read are the ones the mesh sets, routes on and strips."""

from __future__ import annotations

from mesh import REPO
from mesh.routes import COLOR_HEADER
from services.common import mesh_headers

GATEWAY = (REPO / "gateway" / "envoy.yaml.j2").read_text()


def test_the_mesh_routes_on_the_color_header_the_services_send() -> None:
    assert COLOR_HEADER == mesh_headers.COLOR


def test_the_gateway_strips_what_only_the_mesh_may_set_and_names_the_end_user() -> None:
    for header in (mesh_headers.PRINCIPAL, mesh_headers.JWT_SUBJECT, mesh_headers.FORWARDED_BY):
        assert f"- remove: {header}" in GATEWAY, header
    assert f'key: {mesh_headers.PRINCIPAL}, value: "%DOWNSTREAM_PEER_URI_SAN%"' in GATEWAY
    assert f"{{header_name: {mesh_headers.JWT_SUBJECT}, claim_name: sub}}" in GATEWAY
