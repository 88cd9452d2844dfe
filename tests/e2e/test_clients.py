"""The example clients in Go, TypeScript and Java (clients/), run as a user runs them against the mesh.

Each program connects with a client certificate and then with a JWT, lists templates, runs an agent
streaming its events, creates + watches + cancels another, and tells PERMISSION_DENIED and NOT_FOUND
by status code. All three must print the same lines: they show one contract, not three dialects.
`make clients` builds them (a dependency of `make test`).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from afctl.client import Client
from mesh import REPO
from tests.e2e.templates import publish_spinner
from tests.harness_mesh import E2EMesh

PROGRAMS = {
    "go": [str(REPO / "build/clients/go-client")],
    "ts": ["node", str(REPO / "clients/ts/dist/clients/ts/main.js")],
    "java": ["java", "-jar", str(REPO / "clients/java/target/agentfactory-client.jar")],
}
SPIN = "clients-spin"

# What each program prints, in order (the event lines between them may vary with scheduling).
EXPECTED = [
    'run echo-upper: SUCCEEDED output "HELLO"',
    f"create+watch+cancel {SPIN}: CANCELLED",
    "GetAgent of an unknown id: NOT_FOUND",
    "CreateAgent as a viewer: PERMISSION_DENIED",
]


@pytest.fixture(scope="module")
def spin_template(as_role: Callable[[str], Client]) -> str:
    """A template that runs until cancelled (within the policy's bounds), so cancel never races the end."""
    publisher = as_role("publisher")
    description = "spins until cancelled: the example clients' create + watch + cancel"
    return publish_spinner(publisher, SPIN, description, fuel=20_000_000_000)


@pytest.mark.parametrize("language", sorted(PROGRAMS))
def test_example_client(language: str, e2e_mesh: E2EMesh, spin_template: str) -> None:
    program = PROGRAMS[language]
    assert Path(program[-1]).exists(), f"{program[-1]} is missing: run `make clients`"
    tls = e2e_mesh.tls("operator")
    env = {
        **os.environ,
        "AF_GATEWAY": e2e_mesh.gateway,
        "AF_CA": str(tls.ca),
        "AF_CERT": str(tls.cert),
        "AF_KEY": str(tls.key),
        "AF_TOKEN": e2e_mesh.token("viewer"),
        "AF_CANCEL_TEMPLATE": spin_template,
    }
    done = subprocess.run(program, env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, f"{language}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    lines = done.stdout.splitlines()
    assert [line for line in lines if line in EXPECTED] == EXPECTED, done.stdout
    events = [line for line in lines if line.startswith("event: ")]
    assert "event: output 5 bytes" in events and events[-1] == "event: agent SUCCEEDED", done.stdout
    templates = {
        line.split(": ", 1)[0]: line.split(": ", 1)[1].split() for line in lines if line.startswith("templates")
    }
    assert (
        "echo-upper" in templates["templates (mTLS)"] and templates["templates (JWT)"] == templates["templates (mTLS)"]
    )


def readme_snippets() -> list[tuple[str, list[str]]]:
    text = (REPO / "README.md").read_text()
    found = re.findall(r"<!-- snippet: (\S+) -->\s*```\w*\n(.*?)^```", text, re.S | re.M)
    return [(path, [ln.strip() for ln in body.splitlines() if ln.strip()]) for path, body in found]


def test_readme_snippets_are_the_tested_programs() -> None:
    snippets = readme_snippets()
    assert {path for path, _ in snippets} == {
        "clients/go/main.go",
        "clients/ts/main.ts",
        "clients/java/src/main/java/local/agentfactory/example/Main.java",
    }
    for path, lines in snippets:
        source = [ln.strip() for ln in (REPO / path).read_text().splitlines()]
        at = 0
        for line in lines:  # in order, as in the file (the README may leave lines out)
            assert line in source[at:], f"README snippet of {path}: {line!r} is not in the program (after line {at})"
            at = source.index(line, at) + 1
