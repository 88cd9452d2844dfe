"""Key rotation by an admin through the gateway: new templates are signed with the new key version,
templates signed with the old one keep verifying and running."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from afctl.client import Client
from afctl.examples import catalogue
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from tests.harness_mesh import E2EMesh


def test_admin_rotates_the_signing_key(e2e_mesh: E2EMesh, as_role: Callable[[str], Client]) -> None:
    admin, publisher, operator = as_role("admin"), as_role("publisher"), as_role("operator")
    (echo,) = [t for t in catalogue("agents") if t.name == "echo-upper"]
    doc = json.loads(echo.manifest_json())

    # Unique names: the suite may run again against a mesh kept up (AF_E2E_MESH_DIR), keys already rotated.
    suffix = uuid.uuid4().hex[:8]
    old_name, new_name = f"e2e-before-rotation-{suffix}", f"e2e-after-rotation-{suffix}"
    old_version = max(k.key_version for k in admin.public_keys().keys)
    doc.update(name=old_name)
    before = publisher.publish(json.dumps(doc).encode(), echo.module()).template
    assert before.signature.key_version == old_version

    # An admin with a JWT (no certificate) rotates, as `afctl keys rotate` with a token would.
    rotated = e2e_mesh.client(token=e2e_mesh.token("admin")).rotate_key().key
    assert rotated.key_version == old_version + 1
    keys = {k.key_version for k in admin.public_keys().keys}
    assert {old_version, rotated.key_version} <= keys  # the old version stays valid

    doc.update(name=new_name)
    after = publisher.publish(json.dumps(doc).encode(), echo.module()).template
    assert after.signature.key_version == rotated.key_version
    assert publisher.verify_offline(after) == rotated.key_version
    assert publisher.verify_offline(publisher.get_template(old_name)) == old_version

    # Both run: executors learn the new version on first sight and still accept the old one.
    # text-stats was published (signed with v1) when the mesh came up.
    runs = {new_name: b"rotated", old_name: b"rotated", "text-stats": b'{"text": "rotated"}'}
    for name, data in runs.items():
        for _ in range(4):  # several runs, so both executor colors see each
            final, output = operator.run_to_end(name, data)
            assert final.state == sch_pb.AGENT_STATE_SUCCEEDED, (name, final.state, final.reason)
            if name != "text-stats":
                assert output == b"ROTATED"


def test_two_rotations_within_a_second(as_role: Callable[[str], Client]) -> None:
    admin, publisher, operator = as_role("admin"), as_role("publisher"), as_role("operator")
    (echo,) = [t for t in catalogue("agents") if t.name == "echo-upper"]
    doc = json.loads(echo.manifest_json())
    suffix = uuid.uuid4().hex[:8]
    for step in ("first", "second"):
        # Each publish makes every executor precompile, which refreshes its keys for the new version.
        admin.rotate_key()
        doc.update(name=f"e2e-{step}-rotation-{suffix}")
        publisher.publish(json.dumps(doc).encode(), echo.module())
        final, output = operator.run_to_end(doc["name"], b"quick")
        assert final.state == sch_pb.AGENT_STATE_SUCCEEDED and output == b"QUICK"
