"""Restarts, kill -9, damaged files on disk, backup/restore and a missing signer, with real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import zstandard

from agentfactory.registry.v1 import registry_service_pb2 as pb
from services.templates.messages import template_from_proto
from tests.harness import REPO, ServiceProcess, eventually, free_port
from tests.integration.registry.conftest import (
    TIMEOUT,
    Client,
    fresh_registry,
    manifest,
    padded_wasm,
    publish_requests,
)


def revisions(client: Client, after: int, count: int) -> list[int]:
    call = client.stub.WatchTemplates(pb.WatchTemplatesRequest(after_revision=after), timeout=TIMEOUT)
    out = [next(call).revision for _ in range(count)]
    call.cancel()
    return out


def test_watch_revisions_survive_a_restart(tmp_path: Path, signer: ServiceProcess) -> None:
    proc = fresh_registry(tmp_path, signer.addr).start()
    try:
        client = Client(proc.addr, signer.addr)
        client.publish(manifest("r", "1.0.0"))
        client.publish(manifest("r", "1.1.0"))
        proc.stop()
        proc.start()
        client = Client(proc.addr, signer.addr)
        third = client.publish(manifest("r", "1.2.0")).template
        assert third.revision == 3
        assert revisions(client, 0, 3) == [1, 2, 3]
        assert revisions(client, 2, 1) == [3]
        assert client.get("r").template.manifest.version == "1.2.0"
    finally:
        proc.stop()


def test_kill_9_mid_publish_leaves_nothing_half_made(tmp_path: Path, signer: ServiceProcess) -> None:
    proc = fresh_registry(tmp_path, signer.addr).start()
    data_dir = Path(proc.env["AF_DATA_DIR"])
    module = padded_wasm(6 * 1024 * 1024)
    try:
        client = Client(proc.addr, signer.addr)

        def requests_then_crash():
            for i, request in enumerate(publish_requests(manifest("crashy"), module, chunk=512 * 1024)):
                if i == 6:  # header + 5 chunks are in; the upload is half done
                    # Until the upload is on disk (no time bound: pytest's timeout ends a hang).
                    started = lambda: any((data_dir / "tmp").iterdir())  # noqa: E731
                    eventually(started, "the upload's partial file", broken=proc.exited, interval=0.01)
                    proc.kill()
                yield request

        with pytest.raises(grpc.RpcError) as err:
            client.publish_stream(requests_then_crash())
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert any((data_dir / "tmp").iterdir())  # the crash left a partial upload behind

        proc.start()
        client = Client(proc.addr, signer.addr)
        with pytest.raises(grpc.RpcError) as err:
            client.get("crashy", "1.0.0")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert not any((data_dir / "tmp").iterdir())  # swept at start
        assert "swept files" in proc.logs()
        retry = client.publish(manifest("crashy"), module)
        assert retry.created
        assert b"".join(p.chunk for p in client.fetch(retry.template.manifest.module_sha256)) == module
    finally:
        proc.stop()


def test_damaged_files_on_disk_are_data_loss_and_the_registry_keeps_serving(
    tmp_path: Path, signer: ServiceProcess
) -> None:
    # No cache, so every read goes to disk.
    proc = fresh_registry(tmp_path, signer.addr, AF_REGISTRY_CACHE_ENTRIES="0").start()
    data_dir = Path(proc.env["AF_DATA_DIR"])
    try:
        client = Client(proc.addr, signer.addr)
        client.publish(manifest("bomb"))
        client.publish(manifest("flipped"))
        blob_owner = client.publish(manifest("blob-owner"), padded_wasm(4096)).template

        # A stored manifest replaced by a zstd frame that would decompress to 256 MiB.
        params = zstandard.ZstdCompressionParameters.from_level(19, window_log=10)
        (data_dir / "manifests" / "bomb" / "1.0.0.json.zst").write_bytes(
            zstandard.ZstdCompressor(compression_params=params).compress(b"{" * (256 * 1024 * 1024))
        )
        with pytest.raises(grpc.RpcError) as err:
            client.get("bomb", "1.0.0")
        assert err.value.code() == grpc.StatusCode.DATA_LOSS
        assert "decompresses past 1048576 bytes" in err.value.details()

        # One flipped byte in a stored manifest.
        path = data_dir / "manifests" / "flipped" / "1.0.0.json.zst"
        raw = bytearray(path.read_bytes())
        raw[-5] ^= 0x01
        path.write_bytes(bytes(raw))
        with pytest.raises(grpc.RpcError) as err:
            client.get("flipped", "1.0.0")
        assert err.value.code() == grpc.StatusCode.DATA_LOSS

        # One flipped byte in a module blob.
        digest = blob_owner.manifest.module_sha256
        blob = data_dir / "blobs" / "sha256" / digest[:2] / digest
        raw = bytearray(blob.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        blob.write_bytes(bytes(raw))
        with pytest.raises(grpc.RpcError) as err:
            client.fetch(digest)
        assert err.value.code() == grpc.StatusCode.DATA_LOSS
        assert "no longer matches its digest" in err.value.details()

        assert proc.alive()
        assert client.get("blob-owner", "1.0.0").template.revision == blob_owner.revision
        assert client.publish(manifest("after-damage")).created
        assert "stored manifest failed its integrity check" in proc.logs()
        # Verifying offline after the damage still works for the untouched template.
        template_from_proto(client.get("blob-owner", "1.0.0").template).verify(client.keyring())
    finally:
        proc.stop()


def test_signer_unreachable_is_unavailable_and_reads_still_work(tmp_path: Path, signer: ServiceProcess) -> None:
    proc = fresh_registry(tmp_path, f"127.0.0.1:{free_port()}", AF_SIGNER_TIMEOUT_SECONDS="1").start()
    try:
        client = Client(proc.addr)
        with pytest.raises(grpc.RpcError) as err:
            client.publish(manifest("unsigned"))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "signer" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            client.get("unsigned")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert not any((Path(proc.env["AF_DATA_DIR"]) / "blobs" / "sha256").iterdir())
    finally:
        proc.stop()


def run_backup(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.registry.backup", *args],
        cwd=REPO,
        env={**os.environ, "AF_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_backup_and_restore_round_trip(tmp_path: Path, signer: ServiceProcess) -> None:
    proc = fresh_registry(tmp_path / "a", signer.addr).start()
    data_dir = Path(proc.env["AF_DATA_DIR"])
    try:
        client = Client(proc.addr, signer.addr)
        original = client.publish(manifest("kept", labels={"k": "v"}), padded_wasm(100_000)).template
        client.stub.DeprecateTemplate(pb.DeprecateTemplateRequest(name="kept", version="1.0.0"), timeout=TIMEOUT)
        client.publish(manifest("kept", "1.1.0"))
        made = run_backup("create", str(tmp_path / "backup"), data_dir=data_dir)  # while serving
        assert made.returncode == 0, made.stderr
        assert "revision 3" in made.stdout
        client.publish(manifest("after-backup"))
    finally:
        proc.stop()

    restored_dir = tmp_path / "b" / "registry-data"
    done = run_backup("restore", str(tmp_path / "backup"), data_dir=restored_dir)
    assert done.returncode == 0, done.stderr
    proc = fresh_registry(tmp_path / "b", signer.addr).start()
    try:
        client = Client(proc.addr, signer.addr)
        got = client.get("kept", "1.0.0").template
        assert got.canonical_manifest == original.canonical_manifest and got.deprecated
        template_from_proto(got).verify(client.keyring())
        module = b"".join(p.chunk for p in client.fetch(got.manifest.module_sha256))
        assert len(module) == 100_000
        with pytest.raises(grpc.RpcError) as err:
            client.get("after-backup")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert client.publish(manifest("kept", "1.2.0")).template.revision == 4
    finally:
        proc.stop()

    # A damaged backup is refused before anything is written.
    blob = next(p for p in (tmp_path / "backup" / "blobs").rglob("*") if p.is_file())
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x01")
    refused = run_backup("restore", str(tmp_path / "backup"), data_dir=tmp_path / "c")
    assert refused.returncode == 1 and "does not match its checksum" in refused.stderr
    assert not (tmp_path / "c").exists()
