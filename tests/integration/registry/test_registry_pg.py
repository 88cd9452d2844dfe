"""Registry replicas on one real PostgreSQL: a publish on one is read on another; two replicas publishing
one name@version at once: exactly one wins; a watch on any replica sees every replica's publishes and
deprecations in revision order with no gap; bad input is as precise as in the embedded mode."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from agentfactory.registry.v1 import registry_service_pb2 as pb
from mesh.pglocal import LocalPostgres
from tests.harness import ServiceProcess, free_port
from tests.integration.registry.conftest import Client, fresh_registry, manifest
from tests.integration.scheduler.test_scheduler_pg import restart
from tests.postgres import pg_dsn, postgres_server  # noqa: F401 — fixtures


@pytest.fixture
def replicas(tmp_path: Path, signer: ServiceProcess, pg_dsn: str) -> Iterator[list[Client]]:  # noqa: F811
    procs = [fresh_registry(tmp_path / f"r{i}", signer.addr, AF_DATABASE_URL=pg_dsn) for i in range(2)]
    clients = []
    try:
        for proc in procs:
            proc.start()
            clients.append(Client(proc.addr, signer.addr))
        yield clients
    finally:
        for client in clients:
            client.close()
        for proc in procs:
            assert proc.alive(), f"a registry replica died:\n{proc.logs()[-3000:]}"
            proc.stop()


def test_a_publish_on_one_replica_is_read_on_the_other(replicas: list[Client]) -> None:
    a, b = replicas
    published = a.publish(manifest("shared-read", labels={"team": "x"})).template
    got = b.get("shared-read").template
    assert got.signature == published.signature and got.canonical_manifest == published.canonical_manifest
    chunks = b.fetch(published.manifest.module_sha256)
    assert b"".join(c.chunk for c in chunks)[:4] == b"\0asm"
    listed = b.stub.ListTemplates(pb.ListTemplatesRequest(label_selector="team=x"), timeout=10).templates
    assert [t.manifest.name for t in listed] == ["shared-read"]


def test_concurrent_publish_of_one_version_on_two_replicas_has_one_winner(replicas: list[Client]) -> None:
    a, b = replicas

    def publish(client: Client, name: str, description: str, barrier: threading.Barrier) -> grpc.StatusCode:
        barrier.wait()  # both replicas past their own "is it there?" check at about the same moment
        try:
            client.publish(manifest(name, description=description))
            return grpc.StatusCode.OK
        except grpc.RpcError as err:
            return err.code()

    for n in range(6):
        barrier = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            codes = list(pool.map(publish, [a, b], [f"race-{n}"] * 2, ["from a", "from b"], [barrier] * 2))
        assert sorted(codes, key=str) == sorted([grpc.StatusCode.OK, grpc.StatusCode.ALREADY_EXISTS], key=str)
        assert a.get(f"race-{n}").template.canonical_manifest == b.get(f"race-{n}").template.canonical_manifest


def test_watch_on_any_replica_sees_every_replica_in_order(replicas: list[Client]) -> None:
    a, b = replicas
    start = b.stub.ListTemplates(pb.ListTemplatesRequest(), timeout=10)  # warm both channels
    assert start is not None
    seen: list[tuple[int, str, str]] = []
    stream = b.stub.WatchTemplates(pb.WatchTemplatesRequest(after_revision=0), timeout=60)
    expected = []
    for i in range(10):
        writer = (a, b)[i % 2]  # alternate replicas
        writer.publish(manifest("watched", version=f"1.{i}.0"))
        expected.append(f"1.{i}.0")
    a.stub.DeprecateTemplate(pb.DeprecateTemplateRequest(name="watched", version="1.3.0", reason="old"), timeout=10)
    for event in stream:
        if event.template.manifest.name == "watched":
            seen.append((event.revision, pb.TemplateEventKind.Name(event.kind), event.template.manifest.version))
        if len(seen) == 11:
            break
    stream.cancel()
    revisions = [r for r, _, _ in seen]
    assert revisions == sorted(revisions) and len(set(revisions)) == 11
    assert [v for _, k, v in seen if k.endswith("PUBLISHED")] == expected
    assert seen[-1][1:] == ("TEMPLATE_EVENT_KIND_DEPRECATED", "1.3.0")
    # The deprecation made on replica a is what replica b serves now (its cache was dropped).
    assert b.get("watched", "1.3.0").template.deprecated


def test_bad_input_is_as_precise_as_embedded(replicas: list[Client]) -> None:
    a, _ = replicas
    with pytest.raises(grpc.RpcError) as err:
        a.get("no-such-template")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        a.publish(b"{not json")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        a.fetch("0" * 64)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_database_outage_is_unavailable_and_heals(tmp_path: Path, signer: ServiceProcess) -> None:
    root = Path(tempfile.mkdtemp(prefix="af-postgres-registry-outage-"))
    server = LocalPostgres(root, free_port())
    server.start()
    try:
        with fresh_registry(tmp_path / "r", signer.addr, AF_DATABASE_URL=server.dsn) as proc:
            client = Client(proc.addr, signer.addr)
            try:
                client.publish(manifest("outage-kept"))
                pid = server.pid()
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                codes = set()
                for i in range(3):
                    new = manifest("outage-new", version=f"1.{i}.0")
                    calls: list[tuple[Callable[..., object], tuple[object, ...]]] = [
                        (client.get, ("outage-kept", "1.0.0")),
                        (client.publish, (new,)),
                    ]
                    for call, args in calls:
                        try:
                            call(*args)
                        except grpc.RpcError as err:
                            codes.add(err.code())
                    time.sleep(0.2)
                assert codes == {grpc.StatusCode.UNAVAILABLE}, codes
                assert proc.alive()
                restart(server)
                while True:  # the pool reconnects by itself, however long that takes (no time bound)
                    try:
                        got = client.get("outage-kept", "1.0.0").template
                        break
                    except grpc.RpcError as err:
                        assert err.code() == grpc.StatusCode.UNAVAILABLE, err
                        assert proc.alive(), proc.logs()[-4000:]
                        time.sleep(0.2)
                assert got.manifest.name == "outage-kept"  # nothing acknowledged was lost
                assert client.publish(manifest("outage-after")).template.revision > got.revision
            finally:
                client.close()
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
