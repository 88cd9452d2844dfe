"""Read-only template files through real processes: published with the template (registry), fetched by
digest and checked by the executor, mounted read-only; a blob changed on the registry's disk never
reaches a run."""

from __future__ import annotations

import hashlib
import json

import grpc

from afctl.examples import catalogue
from tests.integration.executor.conftest import Executor, Stack, finished, kinds, output

WORDS = b"alpha\nbeta\n"


def test_spell_check_reads_its_word_list_and_cannot_write_it(executor: Executor) -> None:
    events, code, details = executor.run_retrying("spell-check", data=b"To be or not to be, that is the question")
    assert code == grpc.StatusCode.OK, details
    lines = output(events).decode().splitlines()
    assert lines[0] == "checked 10 words, 0 unknown", lines
    assert lines[1].startswith("read-only: yes (errno ") and lines[2].startswith("create: refused (errno ")
    assert finished(events).exit_code == 0


def test_a_file_blob_changed_on_the_registry_disk_is_refused_before_the_run(executor: Executor, stack: Stack) -> None:
    manifest = {"name": "files-tamper", "version": "1.0.0", "limits": {"timeout_ms": 5000}}
    (example,) = [t for t in catalogue("agents") if t.name == "spell-check"]
    with stack.client() as client:
        client.publish(json.dumps(manifest).encode(), example.module(), files={"/data/words.txt": WORDS})
    digest = hashlib.sha256(WORDS).hexdigest()
    (blob,) = [p for p in stack.workdir.rglob(digest) if p.is_file()]
    blob.write_bytes(WORDS.upper())  # same size, other bytes
    events, code, details = executor.run_retrying("files-tamper")
    assert code in (grpc.StatusCode.DATA_LOSS, grpc.StatusCode.FAILED_PRECONDITION), (code, details)
    assert "started" not in kinds(events)
