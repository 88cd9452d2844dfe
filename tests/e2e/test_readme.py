"""The commands users are told to paste work: README.md's grpcurl block and what `make run` prints.

Both are run for real (bash, grpcurl, afctl, make) against the e2e mesh, with the README's
`localhost:8443` and `build/certs` pointed at the mesh's gateway and certificates.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from mesh import REPO
from tests.harness_mesh import E2EMesh

README = REPO / "README.md"
MARKER = "<!-- e2e: grpcurl -->"


def commands(text: str) -> list[str]:
    """Shell commands of a block: backslash continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def readme_block() -> str:
    text = README.read_text()
    at = text.find(MARKER)
    assert at >= 0, f"README.md has no {MARKER} block"
    fence = re.compile(r"\A\s*```[^\n]*\n(.*?)^```", re.S | re.M).match(text[at + len(MARKER) :])
    assert fence, f"{MARKER} must be followed by a fenced code block"
    return fence.group(1)


def for_mesh(command: str, mesh: E2EMesh) -> str:
    command = command.replace("localhost:8443", mesh.gateway).replace("build/certs/", f"{mesh.certs}/")
    # The token must come from this mesh's JWT key (and its topology's issuer and audience).
    return re.sub(
        r"make -s mesh-token (ROLE=\w+)",
        rf"make -s mesh-token \1 CERTS_DIR={mesh.certs} MESH_TOPOLOGY={mesh.topology_path}",
        command,
    )


def run(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, cwd=REPO)


def test_readme_block_has_the_promised_commands() -> None:
    cmds = commands(readme_block())
    assert 4 <= len(cmds) <= 8, cmds
    assert all(c.startswith("build/bin/grpcurl ") for c in cmds), cmds
    text = " ".join(cmds)
    for needed in (" list", " describe ", "/RunAgent", "-protoset", "/GetPublicKeys", "mesh-token ROLE="):
        assert needed in text, needed


@pytest.mark.parametrize("index", range(len(commands(readme_block()))))
def test_readme_grpcurl_command_works(e2e_mesh: E2EMesh, index: int) -> None:
    command = for_mesh(commands(readme_block())[index], e2e_mesh)
    done = run(command)
    assert done.returncode == 0, f"{command}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.stdout.strip(), command
    if "/RunAgent" in command:
        assert "AGENT_STATE_SUCCEEDED" in done.stdout and '"SEVMTE8="' in done.stdout, done.stdout  # HELLO
    if command.endswith(" list"):
        assert "agentfactory.scheduler.v1.SchedulerService" in done.stdout.split()


def quickstart_commands(printed: str) -> list[str]:
    block = printed.split("Try it:", 1)[1].split("\n\n", 1)[0]
    return commands(block)


def test_commands_printed_by_make_run_work(e2e_mesh: E2EMesh) -> None:
    cmds = quickstart_commands(e2e_mesh.quickstart_output)
    assert [c.split()[0] for c in cmds] == ["build/bin/grpcurl", ".venv/bin/python"], cmds
    for command in cmds:
        # Printed for this mesh already (its gateway port and certificate paths).
        assert e2e_mesh.gateway in command and str(e2e_mesh.certs) in command, command
        done = run(command)
        assert done.returncode == 0, f"{command}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert "AGENT_STATE_SUCCEEDED" in run(cmds[0]).stdout
    assert "HELLO" in run(cmds[1]).stdout
