"""Publish, read, list, fetch, deprecate and watch against a real registry signing through a real signer."""

from __future__ import annotations

import hashlib
import queue
import re
import threading
import urllib.request

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentfactory.registry.v1 import registry_service_pb2 as pb
from services.common.errors import FailedPrecondition
from services.templates.manifest import MAX_INHERITANCE_DEPTH
from services.templates.messages import template_from_proto
from services.templates.signature import SignatureRecord
from tests.harness import ServiceProcess
from tests.integration.registry.conftest import TIMEOUT, WASM, Client, manifest, padded_wasm


def test_publish_get_latest_and_verify_offline(client: Client) -> None:
    first = client.publish(manifest("hello", "1.0.0", tools=["log"], labels={"team": "core"}))
    assert first.created and first.template.revision > 0
    assert first.template.manifest.module_sha256 == hashlib.sha256(WASM).hexdigest()
    client.publish(manifest("hello", "1.1.0", tools=["log"]))
    latest = client.get("hello").template
    assert latest.manifest.version == "1.1.0"
    exact = client.get("hello", "1.0.0").template
    assert exact.canonical_manifest == first.template.canonical_manifest
    assert exact.manifest.labels["team"] == "core"
    # Any client can verify offline with the signer's public keys only.
    keyring = client.keyring()
    template = template_from_proto(exact)
    template.verify(keyring)
    assert template.manifest.tools == ("log",)


def test_swapped_or_flipped_signatures_fail_offline_verification(client: Client) -> None:
    a = client.publish(manifest("swap-a")).template
    b = client.publish(manifest("swap-b")).template
    keyring = client.keyring()
    swapped = SignatureRecord(b.signature.key_id, b.signature.key_version, b.signature.signature)
    with pytest.raises(FailedPrecondition, match="altered"):
        keyring.verify(a.canonical_manifest, swapped)
    flipped = bytearray(a.canonical_manifest)
    flipped[10] ^= 1
    own = SignatureRecord(a.signature.key_id, a.signature.key_version, a.signature.signature)
    with pytest.raises(FailedPrecondition, match="altered"):
        keyring.verify(bytes(flipped), own)
    keyring.verify(a.canonical_manifest, own)


def test_republish_is_idempotent_and_changes_are_already_exists(client: Client) -> None:
    first = client.publish(manifest("immutable", role="a"))
    again = client.publish(manifest("immutable", role="a"))
    assert first.created and not again.created
    assert again.template.signature.signature == first.template.signature.signature
    assert again.template.revision == first.template.revision
    with pytest.raises(grpc.RpcError) as err:
        client.publish(manifest("immutable", role="b"))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert 'role (published "a", this one "b")' in err.value.details()


def test_list_paginates_and_filters(client: Client) -> None:
    for name, version, tier in [("list-a", "1.0.0", "x"), ("list-a", "2.0.0", "x"), ("list-b", "1.0.0", "y")]:
        client.publish(manifest(name, version, labels={"tier": tier, "suite": "list"}))
    refs, token = [], ""
    while True:
        page = client.stub.ListTemplates(
            pb.ListTemplatesRequest(label_selector="suite=list", page_size=2, page_token=token), timeout=TIMEOUT
        )
        refs += [f"{t.manifest.name}@{t.manifest.version}" for t in page.templates]
        token = page.next_page_token
        if not token:
            break
    assert refs == ["list-a@2.0.0", "list-a@1.0.0", "list-b@1.0.0"]
    only = client.stub.ListTemplates(pb.ListTemplatesRequest(name="list-a", label_selector="tier=x"), timeout=TIMEOUT)
    assert [t.manifest.version for t in only.templates] == ["2.0.0", "1.0.0"]
    with pytest.raises(grpc.RpcError) as err:
        client.stub.ListTemplates(pb.ListTemplatesRequest(page_token="garbage"), timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_fetch_module_in_chunks(client: Client) -> None:
    module = padded_wasm(2 * 1024 * 1024 + 5000)
    published = client.publish(manifest("big-module"), module, chunk=256 * 1024).template
    digest = published.manifest.module_sha256
    assert published.module_size == len(module)
    parts = client.fetch(digest)
    assert len(parts) == 3 and {p.total_size for p in parts} == {len(module)}
    data = b"".join(p.chunk for p in parts)
    assert hashlib.sha256(data).hexdigest() == digest
    with pytest.raises(grpc.RpcError) as err:
        client.fetch("0" * 64)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_deprecate_and_watch_from_zero_and_from_a_revision(client: Client) -> None:
    base = client.publish(manifest("watched", "1.0.0")).template.revision
    events: queue.Queue = queue.Queue()
    # A guard against a hang, far beyond what the test takes: the stream's deadline must not end it early.
    call = client.stub.WatchTemplates(pb.WatchTemplatesRequest(after_revision=0), timeout=600)

    def read() -> None:
        try:
            for event in call:
                events.put(event)
        except grpc.RpcError as exc:
            events.put(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    seen = []
    # No time bound on the events (the reader puts an error in the queue too): pytest's timeout ends a hang.
    while not seen or seen[-1].revision < base:
        seen.append(events.get())
    assert [e.revision for e in seen] == sorted(e.revision for e in seen) and seen[0].revision == 1
    deprecated = client.stub.DeprecateTemplate(
        pb.DeprecateTemplateRequest(name="watched", version="1.0.0", reason="superseded"), timeout=TIMEOUT
    ).template
    assert deprecated.deprecated and deprecated.deprecation_reason == "superseded"
    live = events.get()
    assert live.kind == pb.TEMPLATE_EVENT_KIND_DEPRECATED and live.revision == base + 1
    assert live.template.manifest.name == "watched" and live.template.deprecated
    client.publish(manifest("watched", "1.1.0"))
    assert events.get().kind == pb.TEMPLATE_EVENT_KIND_PUBLISHED
    call.cancel()
    thread.join(5)
    # From a later revision: only what came after it.
    later = client.stub.WatchTemplates(pb.WatchTemplatesRequest(after_revision=base), timeout=TIMEOUT)
    assert next(later).revision == base + 1
    later.cancel()
    # Deprecated versions are skipped by "latest" and by default listings.
    assert client.get("watched").template.manifest.version == "1.1.0"


def test_inheritance(client: Client) -> None:
    client.publish(manifest("parent", role="worker", tools=["kv"], env={"A": "1", "B": "2"}))
    child = client.publish(manifest("child", extends="parent@1.0.0", env={"B": "3"}), b"").template
    assert child.manifest.role == "worker" and dict(child.manifest.env) == {"A": "1", "B": "3"}
    assert child.manifest.module_sha256 == hashlib.sha256(WASM).hexdigest() and child.module_size == len(WASM)
    with pytest.raises(grpc.RpcError) as err:
        client.publish(manifest("orphan", extends="nobody@1.0.0"), b"")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "nobody@1.0.0 is not published" in err.value.details()
    client.publish(manifest("deep0"))
    for i in range(1, MAX_INHERITANCE_DEPTH + 1):
        client.publish(manifest(f"deep{i}", extends=f"deep{i - 1}@1.0.0"), b"")
    with pytest.raises(grpc.RpcError) as err:
        client.publish(manifest("deep-too-far", extends=f"deep{MAX_INHERITANCE_DEPTH}@1.0.0"), b"")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"more than {MAX_INHERITANCE_DEPTH} levels" in err.value.details()


def test_policy_denial_names_the_rule(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.publish(manifest("denied", tools=["log", "process_spawn"]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "denied_tools.process_spawn" in err.value.details()
    status = rpc_status.from_call(err.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.metadata["rule"] == "denied_tools.process_spawn"
    with pytest.raises(grpc.RpcError) as err:
        client.get("denied", "1.0.0")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_cache_metrics_are_exported(client: Client, registry: ServiceProcess) -> None:
    client.publish(manifest("metered"))
    for _ in range(3):
        client.get("metered", "1.0.0")
    url = f"http://{registry.env['AF_METRICS_ADDR']}/metrics"
    text = urllib.request.urlopen(url, timeout=TIMEOUT).read().decode()
    hits = re.search(r'agentfactory_cache_requests_total\{cache="registry_manifest",result="hit"\} (\S+)', text)
    assert hits and float(hits.group(1)) >= 3
    assert 'agentfactory_cache_entry_age_seconds_count{cache="registry_manifest"}' in text
    assert "agentfactory_registry_watchers" in text
