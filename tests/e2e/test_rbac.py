"""Who may do what through the gateway, against the real services (issue 4, items 3, 4 and 8).

The matrix is written out here from the issue and gateway/policy.yaml's intent, independently of
the policy file: admin everything; publisher publishes/deprecates and reads; operator runs
agents and reads; viewer reads too (views, FetchModule and Verify: `afctl templates verify`).
Behind the gateway the sidecars still refuse signer.Sign
and executor.Run to everyone but the registry and the scheduler, so not even an admin gets them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from afctl.client import Client, Tls, open_channel
from afctl.examples import catalogue
from mesh.methods import contracts
from tests.harness_mesh import E2EMesh
from tests.integration.mesh.tinyapp import call
from tests.role_matrix import END_TO_END_ALLOWS as ALLOWS
from tests.role_matrix import ROLES

DENIED = grpc.StatusCode.PERMISSION_DENIED
# How the real services answer an empty request: they validate it (or list, or watch).
ANSWERED_BY_SERVICE = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}
# A watch stays open until the client's deadline (Envoy leaves ending a stream at its deadline to the
# client, so this is DEADLINE_EXCEEDED every time, never an Envoy reset: mesh/routes.py).
ANSWERED = {
    "registry.WatchTemplates": {grpc.StatusCode.DEADLINE_EXCEEDED},
    "signer.WatchPublicKeys": {grpc.StatusCode.DEADLINE_EXCEEDED},  # the key set, then open until the deadline
}
# An empty RotateKey request is a real rotation: the admin's is exercised in test_rotation.py.
NOT_PROBED = {("admin", "signer.RotateKey")}


def _probe(mesh: E2EMesh, role: str, credential: str) -> list[str]:
    """Every contract method with an empty request; return the mismatches with the matrix.

    Allowed calls reach the real service, which answers for itself (mostly INVALID_ARGUMENT for an
    empty request, OK for lists, DEADLINE_EXCEEDED for a watch that stays open for its 1 s); denied calls are
    PERMISSION_DENIED from Envoy.
    """
    if credential == "certificate":
        channel, md = open_channel(mesh.gateway, mesh.tls(role)), []
    else:
        channel = open_channel(mesh.gateway, Tls(mesh.tls(role).ca))  # TLS, no client certificate
        md = [("authorization", f"Bearer {mesh.token(role)}")]
    methods = [(f"{svc}.{name}", m) for svc, ms in contracts().items() for name, m in ms.items()]
    methods = [(key, m) for key, m in methods if (role, key) not in NOT_PROBED]
    with channel, ThreadPoolExecutor(len(methods)) as pool:
        codes = list(pool.map(lambda km: call(channel, km[1], timeout=1.0, metadata=md)[0], methods))
    wrong = []
    for (key, _), code in zip(methods, codes, strict=True):
        allowed = key in ALLOWS[role]
        if allowed and code not in ANSWERED.get(key, ANSWERED_BY_SERVICE):
            wrong.append(
                f"{role}/{credential} {key}: {code.name}, but the role may call it (the service did not answer)"
            )
        elif not allowed and code != DENIED:
            wrong.append(f"{role}/{credential} {key}: {code.name}, want PERMISSION_DENIED")
    return wrong


@pytest.mark.parametrize("credential", ["certificate", "jwt"])
@pytest.mark.parametrize("role", ROLES)
def test_role_matrix_against_the_real_services(e2e_mesh: E2EMesh, role: str, credential: str) -> None:
    wrong = _probe(e2e_mesh, role, credential)
    assert not wrong, "\n".join(wrong)


def _code(fn: Callable[[], object]) -> grpc.StatusCode:
    try:
        fn()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _echo_manifest(name: str) -> tuple[bytes, bytes | None]:
    (echo,) = [t for t in catalogue("agents") if t.name == "echo-upper"]
    doc = json.loads(echo.manifest_json())
    doc["name"] = name
    return json.dumps(doc).encode(), echo.module()


@pytest.mark.parametrize("credential", ["certificate", "jwt"])
def test_real_requests_denied_to_roles_without_them(e2e_mesh: E2EMesh, credential: str) -> None:
    def as_(role: str) -> Client:
        if credential == "certificate":
            return e2e_mesh.client(role)
        return e2e_mesh.client(token=e2e_mesh.token(role))

    admin = e2e_mesh.client("admin")
    latest = max(k.key_version for k in admin.public_keys().keys)
    for role in ("viewer", "operator"):
        client, name = as_(role), f"e2e-denied-{role}-{credential}"
        assert _code(lambda: client.publish(*_echo_manifest(name))) == DENIED, role  # noqa: B023 (called at once)
        # Nothing was published on the way.
        assert _code(lambda: admin.get_template(name)) == grpc.StatusCode.NOT_FOUND  # noqa: B023
    for role in ("viewer", "publisher"):
        client = as_(role)
        assert _code(lambda: list(client.run_agent("echo-upper", b"x"))) == DENIED, role  # noqa: B023
    for role in ("viewer", "operator", "publisher"):
        assert _code(as_(role).rotate_key) == DENIED, role
        # ...and did not rotate.
        assert max(k.key_version for k in admin.public_keys().keys) == latest
    # What each may do still works with the same credential.
    assert _code(lambda: as_("viewer").list_templates()) == grpc.StatusCode.OK
    assert _code(lambda: list(as_("operator").run_agent("echo-upper", b"x"))) == grpc.StatusCode.OK
    assert _code(lambda: as_("publisher").publish(*_echo_manifest(f"e2e-allowed-{credential}"))) == grpc.StatusCode.OK


def test_no_credential_is_denied(e2e_mesh: E2EMesh) -> None:
    # TLS without a client certificate and without a token: nothing to authorise, nothing allowed.
    # (Envoy's RBAC answers 403, hence PERMISSION_DENIED rather than UNAUTHENTICATED.)
    anonymous = e2e_mesh.client()
    assert _code(anonymous.list_templates) == DENIED
    assert _code(lambda: list(anonymous.run_agent("echo-upper", b"x"))) == DENIED


@pytest.mark.parametrize("flaw", ["garbage", "expired", "wrong-signature"])
def test_an_invalid_token_is_unauthenticated(e2e_mesh: E2EMesh, flaw: str) -> None:
    if flaw == "garbage":
        token = "not.a.jwt"
    elif flaw == "expired":
        token = e2e_mesh.token("admin", ttl=60, now=time.time() - 3600)
    else:
        head, payload, sig = e2e_mesh.token("admin").split(".")
        token = f"{head}.{payload}.{sig[:-4]}AAAA"
    client = e2e_mesh.client(token=token)
    assert _code(client.list_templates) == grpc.StatusCode.UNAUTHENTICATED
    # A bad token next to a good certificate is still refused: a presented credential must be valid.
    with_cert = e2e_mesh.client("admin", token=token)
    assert _code(with_cert.list_templates) == grpc.StatusCode.UNAUTHENTICATED


def test_either_credential_may_grant_the_call(e2e_mesh: E2EMesh) -> None:
    # gateway/policy.yaml: allowed if the certificate's role or the token's role allows the method.
    both = e2e_mesh.client("viewer", token=e2e_mesh.token("operator"))
    _, output = both.run_to_end("echo-upper", b"two credentials")
    assert output == b"TWO CREDENTIALS"
