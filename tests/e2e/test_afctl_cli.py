"""The installed `afctl` command as a person meets it: --version, -o json|yaml, and one line on stderr
with the documented exit code (README "afctl exit codes") for every failure it expects."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from afctl.client import Client
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from mesh import REPO
from tests.harness_mesh import E2EMesh

AFCTL = REPO / ".venv/bin/afctl"


def afctl(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AF_")}
    return subprocess.run([str(AFCTL), *args], capture_output=True, text=True, timeout=60, cwd=REPO, env=env)


def connect(mesh: E2EMesh, role: str = "viewer") -> list[str]:
    tls = mesh.tls(role)
    return ["--gateway", mesh.gateway, "--ca", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key)]


def test_installed_with_a_version() -> None:
    assert AFCTL.exists(), "make setup installs afctl into .venv/bin"
    done = afctl("--version")
    assert done.returncode == 0 and re.fullmatch(r"afctl \d+\.\d+\.\d+\n", done.stdout), done


def test_completion_targets_the_installed_command() -> None:
    env = {**os.environ, "_AFCTL_COMPLETE": "complete_bash", "COMP_WORDS": "afctl tem", "COMP_CWORD": "1"}
    done = subprocess.run([str(AFCTL)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and done.stdout.split() == ["templates"], done


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_read_commands_print_json_and_yaml(e2e_mesh: E2EMesh, fmt: str) -> None:
    load = json.loads if fmt == "json" else yaml.safe_load
    templates = afctl(*connect(e2e_mesh), "templates", "list", "-o", fmt)
    assert templates.returncode == 0, templates.stderr
    names = [t["manifest"]["name"] for t in load(templates.stdout)]
    assert "echo-upper" in names
    one = afctl(*connect(e2e_mesh), "templates", "get", "echo-upper", "-o", fmt)
    assert one.returncode == 0 and load(one.stdout)["manifest"]["moduleSha256"], one.stderr
    keys = afctl(*connect(e2e_mesh), "keys", "list", "-o", fmt)
    assert keys.returncode == 0 and load(keys.stdout)["keys"], keys.stderr


def test_watch_of_an_agent_that_already_ended_prints_its_output_and_ending(
    e2e_mesh: E2EMesh, as_role: Callable[[str], Client]
) -> None:
    # A watch that starts after the agent ended gets one event: the agent, its output inside it.
    events = list(as_role("operator").run_agent("echo-upper", b"watched late\n", timeout=90))
    final = events[-1].agent
    assert final.state == sch_pb.AGENT_STATE_SUCCEEDED and final.output == b"WATCHED LATE\n", final
    done = afctl(*connect(e2e_mesh), "agents", "watch", final.id)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"WATCHED LATE\nSUCCEEDED {final.reason}\n", done.stdout


# (what a person gets wrong, argv after afctl, exit code, what the one line says)
CASES = [
    ("unknown flag", ["templates", "list", "--bogus"], 2, r"No such option: --bogus"),
    ("color not blue/green", ["--color", "purple", "templates", "list"], 2, r"'--color'.*must be one of blue, green"),
    ("state not a state", ["agents", "list", "--state", "done"], 2, r"'--state'.*must be one of pending"),
    ("output not a format", ["templates", "list", "-o", "xml"], 2, r"'--output' / '-o'"),
    ("cert without key", ["--cert", "x.pem", "templates", "list"], 2, r"give both --cert and --key"),
    ("missing CA file", ["--gateway", "localhost:1", "--ca", "/nonexistent/ca.pem", "templates", "list"], 4,
     r"cannot read /nonexistent/ca.pem: No such file or directory"),
    ("missing input file", ["{mesh}", "run", "echo-upper", "-i", "@/nonexistent/in.txt"], 4,
     r"cannot read /nonexistent/in.txt"),
    ("nothing listening", ["--gateway", "localhost:1", "--ca", "{ca}", "templates", "list"], 5,
     r"cannot reach localhost:1"),
    ("wrong CA", ["--gateway", "{gateway}", "--ca", "{other_ca}", "templates", "list"], 6, r"TLS with .* failed"),
    ("not allowed", ["{mesh}", "agents", "create", "echo-upper"], 1, r"PERMISSION_DENIED"),
    ("no such template", ["{mesh}", "templates", "get", "no-such-template"], 1, r"NOT_FOUND: "),
]  # fmt: skip


@pytest.mark.parametrize(("case", "argv", "code", "message"), CASES, ids=[c[0] for c in CASES])
def test_failures_are_one_line_with_their_exit_code(
    e2e_mesh: E2EMesh, tmp_path: Path, case: str, argv: list[str], code: int, message: str
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_text(e2e_mesh.tls("viewer").cert.read_text())  # a certificate, but not the mesh's CA
    args: list[str] = []
    for a in argv:
        if a == "{mesh}":
            args += connect(e2e_mesh)
        else:
            args.append(a.format(gateway=e2e_mesh.gateway, ca=e2e_mesh.tls("viewer").ca, other_ca=other_ca))
    done = afctl(*args)
    assert done.returncode == code, (case, done.returncode, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("afctl: error: "), (case, done.stderr)
    assert re.search(message, lines[0]), (case, lines[0])
    assert "Traceback" not in done.stderr


def test_readme_documents_every_exit_code() -> None:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### afctl exit codes") :]
    for code in sorted({c[2] for c in CASES} | {0, 3}):
        assert re.search(rf"^\| {code} \|", section, re.M), f"README: exit code {code} is not in the table"
