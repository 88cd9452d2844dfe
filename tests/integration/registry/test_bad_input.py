"""Bad input gets a precise status and the registry keeps serving (issue 2 item 7)."""

from __future__ import annotations

import hashlib

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentfactory.registry.v1 import registry_service_pb2 as pb
from tests.integration.registry.conftest import TIMEOUT, WASM, Client, manifest, padded_wasm


def assert_status(err: pytest.ExceptionInfo[grpc.RpcError], code: grpc.StatusCode, text: str) -> None:
    assert err.value.code() == code, err.value.details()
    assert text in err.value.details()


def field_of(err: pytest.ExceptionInfo[grpc.RpcError]) -> str:
    status = rpc_status.from_call(err.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return bad.field_violations[0].field


@pytest.fixture(autouse=True)
def still_serving(client: Client):
    yield
    # After every bad request, a normal call works.
    reply = client.publish(manifest("canary"))
    assert reply.template.manifest.name == "canary"


@pytest.mark.parametrize(
    ("raw", "text", "field"),
    [
        (b"{not json", "manifest_json is not valid JSON", "manifest_json"),
        (b"", "manifest_json is empty", "manifest_json"),
        (b"[1, 2]", "must be a JSON object", "manifest_json"),
        (manifest("x", surprise=1), "unknown manifest field 'surprise'", "surprise"),
        (manifest("x", "1.0"), "is not a semantic version", "version"),
        (manifest("x", "01.0.0"), "is not a semantic version", "version"),
        (manifest("Bad_Name"), "must start with a letter", "name"),
        (manifest("x", limits={"fuel": -1}), "limits.fuel must be positive", "limits.fuel"),
        (b'{"name": "x", "version": "1.0.0", "name": "y"}', "repeats the key", "name"),
        (b"{" + b'"a":' * 0 + b'"name": "x", "version": "1.0.0", "description": "' + b"d" * 70000 + b'"}',
         "the limit is 65536", "manifest_json"),
    ],
)  # fmt: skip
def test_malformed_manifests(client: Client, raw: bytes, text: str, field: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.publish(raw)
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, text)
    assert field_of(err) == field


@pytest.mark.parametrize(
    ("module", "module_size", "code", "text"),
    [
        (b"", 100, grpc.StatusCode.INVALID_ARGUMENT, "module_size is 100 but no module bytes arrived"),
        (WASM, 9 * 1024 * 1024, grpc.StatusCode.RESOURCE_EXHAUSTED, "rule module.max_bytes"),
        (b"MZ\x90\x00" + b"\0" * 60, None, grpc.StatusCode.INVALID_ARGUMENT, "not WebAssembly"),
        (WASM, len(WASM) + 1, grpc.StatusCode.INVALID_ARGUMENT, "ended after"),
        (WASM + b"\0", len(WASM), grpc.StatusCode.INVALID_ARGUMENT, "more module bytes arrived"),
        (b"", 0, grpc.StatusCode.INVALID_ARGUMENT, "no module: upload one"),
    ],
)
def test_bad_modules(client: Client, module: bytes, module_size: int | None, code: grpc.StatusCode, text: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.publish(manifest("bad-module"), module, module_size=module_size)
    assert_status(err, code, text)


def test_a_header_that_understates_the_module_size(client: Client) -> None:
    # The header lies (says small): the upload stops at the declared size, so the policy cap holds too.
    module = padded_wasm(3 * 1024 * 1024)
    with pytest.raises(grpc.RpcError) as err:
        client.publish(manifest("liar"), module, module_size=1024 * 1024)
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "more module bytes arrived than the header's module_size")


def test_message_over_the_grpc_limit(client: Client) -> None:
    big = b"\0asm\x01\x00\x00\x00" + b"\0" * (5 * 1024 * 1024)
    with pytest.raises(grpc.RpcError) as err:
        client.publish_stream(
            [
                pb.PublishTemplateRequest(
                    header=pb.PublishHeader(manifest_json=manifest("huge"), module_size=len(big))
                ),
                pb.PublishTemplateRequest(chunk=big),
            ]
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_chunk_over_one_mib(client: Client) -> None:
    module = padded_wasm(2 * 1024 * 1024)
    with pytest.raises(grpc.RpcError) as err:
        client.publish(manifest("fat-chunk"), module, chunk=2 * 1024 * 1024)
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "exceeds the 1048576-byte chunk limit")


def test_stream_shape_errors(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.publish_stream([pb.PublishTemplateRequest(chunk=WASM)])
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "first message of a publish stream must be the header")
    with pytest.raises(grpc.RpcError) as err:
        client.publish_stream([])
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "stream is empty")
    header = pb.PublishTemplateRequest(header=pb.PublishHeader(manifest_json=manifest("twice"), module_size=8))
    with pytest.raises(grpc.RpcError) as err:
        client.publish_stream([header, header])
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "only the first message may be the header")


def test_wrong_digests(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.publish(manifest("wrong-digest", module_sha256="ab" * 32))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "does not match the uploaded module")
    with pytest.raises(grpc.RpcError) as err:
        client.publish(manifest("absent-digest", module_sha256="cd" * 32), b"")
    assert_status(err, grpc.StatusCode.FAILED_PRECONDITION, "is not stored; upload it")
    with pytest.raises(grpc.RpcError) as err:
        client.publish(manifest("short-digest", module_sha256="abc"))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "64 lower-case hex digits")
    with pytest.raises(grpc.RpcError) as err:
        client.fetch("NOT-A-DIGEST")
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "64 lower-case hex digits")
    good = client.publish(manifest("right-digest", module_sha256=hashlib.sha256(WASM).hexdigest()))
    assert good.template.module_size == len(WASM)


def test_bad_reads(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.get("")
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "name is required")
    with pytest.raises(grpc.RpcError) as err:
        client.get("x", "latest")
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "not a semantic version")
    with pytest.raises(grpc.RpcError) as err:
        client.stub.ListTemplates(pb.ListTemplatesRequest(label_selector="a=b,c"), timeout=TIMEOUT)
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "must look like key=value")
    with pytest.raises(grpc.RpcError) as err:
        client.stub.DeprecateTemplate(pb.DeprecateTemplateRequest(name="nothing", version="1.0.0"), timeout=TIMEOUT)
    assert_status(err, grpc.StatusCode.NOT_FOUND, "nothing@1.0.0 is not published")
