"""Fuzz every RPC of every service, against the real four services on loopback.

Hypothesis strategies are built from the protobuf descriptors (every field of every request type:
strings short, long and hostile, integers over their whole wire range, open enums past their
values, nested messages, maps, repeated fields), plus raw bytes that are not a message at all
(truncated varints, invalid UTF-8, bad wire types). Every reply must be a status a client can act on
(never UNKNOWN, never INTERNAL), its metadata must fit the 16 KiB limit, and no process may die.

Bounded in time: a few examples per RPC, no Hypothesis deadline (the machine is loaded), short call
deadlines, and streams read for a few messages at most.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfactory.executor.v1 import executor_service_pb2 as exe_pb
from agentfactory.registry.v1 import registry_service_pb2 as reg_pb
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from agentfactory.signer.v1 import signer_service_pb2 as sig_pb
from tests.harness import ServiceProcess, wait_serving
from tests.integration.conftest import local_signer
from tests.integration.scheduler.conftest import executor_env, publish, templates

METADATA_LIMIT = 16 * 1024
EXAMPLES = 12  # per RPC, on top of the raw-bytes cases
CALL_TIMEOUT = 3.0
STREAM_READ = 3  # messages read from a server stream before cancelling it
# A client must be able to *receive* an oversized reply to measure it: raise its own limits far above.
CHANNEL_OPTIONS = [("grpc.max_metadata_size", 1 << 20), ("grpc.absolute_max_metadata_size", 1 << 20)]
ALLOWED_TO_TIME_OUT = grpc.StatusCode.DEADLINE_EXCEEDED  # a watch with nothing to say yet
NEVER = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)

SERVICES = {
    "registry": reg_pb.DESCRIPTOR.services_by_name["RegistryService"],
    "signer": sig_pb.DESCRIPTOR.services_by_name["SignerService"],
    "executor": exe_pb.DESCRIPTOR.services_by_name["ExecutorService"],
    "scheduler": sch_pb.DESCRIPTOR.services_by_name["SchedulerService"],
}
METHODS = [(svc, m) for svc, desc in SERVICES.items() for m in desc.methods]

# Raw request bodies that are not a decodable message of any of our types.
UNDECODABLE = [
    b"\x0a\xff",  # a length past the end
    b"\x0a\x02\xff\xfe",  # invalid UTF-8 in field 1 (a string in most requests)
    b"\x12\x02\xc3\x28",  # invalid UTF-8 in field 2
    b"\x08",  # a tag without its value
    b"\x08" + b"\xff" * 10 + b"\x01",  # an 11-byte varint
    b"\x0f",  # wire type 7
    b"\x0b",  # a group start that never ends
    b"\x00",  # field number 0
]

HOSTILE_TEXT = st.sampled_from(
    [
        "",
        "echo-upper",
        "echo-upper\n",
        "1.0.0",
        "1.0.0\n",
        "..",
        "../../etc/passwd",
        "%00",
        "\u0000",
        "\u202e",
        "spiffe://agentfactory.local/sa/gateway",
        "k=v,k2=v2",
        "=",
        "x" * 5000,
        "\u00e9" * 20_000,
        "y" * 100_000,
    ]
)

INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = sorted({lo, hi, 0 if lo <= 0 <= hi else lo, min(hi, 2**31), min(hi, 2**63 - 1), min(hi, 2**63)})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi), st.integers(max(lo, -3), min(hi, 100)))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.text(max_size=40), HOSTILE_TEXT)
    if t == FieldDescriptor.TYPE_BYTES:
        return st.one_of(
            st.binary(max_size=64), st.sampled_from([b"", b"{}", b'{"name":"x"}', b"\x00asm" + b"\x00" * 4])
        )
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(numbers), st.integers(-5, 1000))  # proto3 enums are open
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    lo, hi = INT_RANGES[t]
    return _integers(lo, hi)


def message_strategy(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of this type, field by field (each field present or not)."""
    cls = GetMessageClass(desc)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for f in desc.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if f.message_type.GetOptions().map_entry:
                key = _scalar(f.message_type.fields_by_name["key"])
                value_field = f.message_type.fields_by_name["value"]
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    continue  # no such map in the contracts today
                fields[f.name] = st.dictionaries(key, _scalar(value_field), max_size=3)
            elif depth < 3:
                sub = message_strategy(f.message_type, depth + 1)
                fields[f.name] = st.lists(sub, max_size=2) if f.is_repeated else sub
        elif f.is_repeated:
            fields[f.name] = st.lists(_scalar(f), max_size=3)
        else:
            fields[f.name] = _scalar(f)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        for name, strategy in fields.items():
            if not draw(st.booleans()):
                continue
            value = draw(strategy)
            try:
                field = desc.fields_by_name[name]
                if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
                    getattr(msg, name).update(value)
                elif field.type == FieldDescriptor.TYPE_MESSAGE and field.is_repeated:
                    getattr(msg, name).extend(value)
                elif field.type == FieldDescriptor.TYPE_MESSAGE:
                    getattr(msg, name).CopyFrom(value)
                elif field.is_repeated:
                    getattr(msg, name).extend(value)
                else:
                    setattr(msg, name, value)
            except (ValueError, TypeError):
                pass  # a value this runtime refuses to even build (e.g. a float out of range)
        return msg

    return build()


def request_bodies(method: MethodDescriptor) -> st.SearchStrategy[bytes]:
    return message_strategy(method.input_type).map(lambda m: m.SerializeToString())


def _settings() -> settings:
    return settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same examples on every run: no flakes from a lucky draw
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )


# --- the services ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServiceProcess]]:
    work: Path = tmp_path_factory.mktemp("fuzz")
    with (
        local_signer(work) as signer,
        ServiceProcess("registry", work, {"AF_SIGNER_ADDR": signer.addr}) as registry,
    ):
        manifest, module = templates()[0]  # echo-upper: something real to find, fetch and run
        publish(registry.addr, manifest, module)
        env = {"AF_REGISTRY_ADDR": registry.addr}
        with (
            ServiceProcess("executor-fuzz", work, executor_env(registry, signer)) as executor,
            ServiceProcess("scheduler", work, {**env, "AF_EXECUTOR_ADDRS": executor.addr}) as scheduler,
        ):
            yield {"registry": registry, "signer": signer, "executor": executor, "scheduler": scheduler}


@pytest.fixture(scope="module")
def channels(services: dict[str, ServiceProcess]) -> Iterator[dict[str, grpc.Channel]]:
    chans = {name: grpc.insecure_channel(p.addr, options=CHANNEL_OPTIONS) for name, p in services.items()}
    yield chans
    for ch in chans.values():
        ch.close()


def _metadata_size(*parts: Any) -> int:
    total = 0
    for md in parts:
        for key, value in md or ():
            total += len(key) + len(value) + 32  # HPACK counts 32 bytes of overhead per entry
    return total


def _invoke(channel: grpc.Channel, method: MethodDescriptor, bodies: list[bytes]) -> tuple[grpc.StatusCode, str, int]:
    """One call with raw request bodies; (status, details, metadata bytes of the reply)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    ident = (None, None)  # raw bytes both ways: no (de)serializer on the client
    try:
        if method.client_streaming:
            if method.server_streaming:
                raise AssertionError("no bidirectional methods in the contracts")
            _, call = channel.stream_unary(path, *ident).with_call(iter(bodies), timeout=CALL_TIMEOUT)
            return grpc.StatusCode.OK, "", _metadata_size(call.initial_metadata(), call.trailing_metadata())
        if method.server_streaming:
            stream = channel.unary_stream(path, *ident)(bodies[0], timeout=CALL_TIMEOUT)
            try:
                for i, _ in enumerate(stream):
                    if i + 1 >= STREAM_READ:
                        break
            finally:
                size = _metadata_size(stream.initial_metadata())
                stream.cancel()
            return grpc.StatusCode.OK, "", size
        _, call = channel.unary_unary(path, *ident).with_call(bodies[0], timeout=CALL_TIMEOUT)
        return grpc.StatusCode.OK, "", _metadata_size(call.initial_metadata(), call.trailing_metadata())
    except grpc.RpcError as err:
        details = err.details() or ""  # type: ignore[attr-defined]
        size = _metadata_size(err.initial_metadata(), err.trailing_metadata()) + len(details.encode())  # type: ignore[attr-defined]
        return err.code(), details, size  # type: ignore[attr-defined]


def _check_reply(method: MethodDescriptor, bodies: list[bytes], code: grpc.StatusCode, details: str, size: int) -> None:
    where = f"{method.full_name} with {[b[:60] for b in bodies]!r}"
    assert code not in NEVER, f"{where}: {code.name} {details[:300]!r}"
    assert size < METADATA_LIMIT, f"{where}: reply metadata {size} bytes"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        assert "metadata" not in details, f"{where}: {details[:300]!r}"
    if code == grpc.StatusCode.CANCELLED:
        raise AssertionError(f"{where}: CANCELLED by the server: {details[:300]!r}")


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s}.{m.name}" for s, m in METHODS])
def test_undecodable_requests_are_invalid_argument(
    channels: dict[str, grpc.Channel], service: str, method: MethodDescriptor
) -> None:
    for raw in UNDECODABLE:
        try:
            GetMessageClass(method.input_type).FromString(raw)
            continue  # decodes as this type (e.g. an empty request type skips unknown fields): not a case here
        except Exception:
            pass
        code, details, size = _invoke(channels[service], method, [raw])
        _check_reply(method, [raw], code, details, size)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{method.full_name} {raw!r}: {code.name} {details!r}"

    # Random bytes: some decode (as unknown fields or real ones), most do not; either way a real status.
    @_settings()
    @given(st.binary(max_size=48))
    def random_bytes(raw: bytes) -> None:
        code, details, size = _invoke(channels[service], method, [raw])
        if code == ALLOWED_TO_TIME_OUT and method.server_streaming:
            return
        _check_reply(method, [raw], code, details, size)

    random_bytes()


KNOWN = [
    # The issue's own samples, so they are always among the cases whatever Hypothesis draws.
    ("registry", "WatchTemplates", reg_pb.WatchTemplatesRequest(after_revision=2**63)),
    ("registry", "WatchTemplates", reg_pb.WatchTemplatesRequest(after_revision=2**64 - 1)),
    ("registry", "GetTemplate", reg_pb.GetTemplateRequest(name="n" * 5000)),
    ("registry", "GetTemplate", reg_pb.GetTemplateRequest(name="echo-upper\n")),
    ("scheduler", "GetAgent", sch_pb.GetAgentRequest(id="a" * 100_000)),
    ("scheduler", "RunAgent", sch_pb.RunAgentRequest(template_name="x" * 5000, labels={"k" * 3000: "v"})),
    ("scheduler", "ListAgents", sch_pb.ListAgentsRequest(page_size=2**31 - 1, page_token="\u00e9" * 900)),
    ("signer", "SetMinimumKeyVersion", sig_pb.SetMinimumKeyVersionRequest(min_version=2**32 - 1)),
    ("executor", "Run", exe_pb.RunRequest(agent_id="a" * 100_000, template_name="echo-upper")),
]


@pytest.mark.parametrize(
    ("service", "name", "request_msg"), KNOWN, ids=[f"{s}.{n}-{i}" for i, (s, n, _) in enumerate(KNOWN)]
)
def test_known_hostile_requests(
    channels: dict[str, grpc.Channel], service: str, name: str, request_msg: Message
) -> None:
    method = SERVICES[service].methods_by_name[name]
    body = [request_msg.SerializeToString()]
    code, details, size = _invoke(channels[service], method, body)
    _check_reply(method, body, code, details, size)
    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION), (
        f"{method.full_name}: {code.name} {details[:200]!r}"
    )


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s}.{m.name}" for s, m in METHODS])
def test_generated_requests_get_actionable_statuses(
    channels: dict[str, grpc.Channel], services: dict[str, ServiceProcess], service: str, method: MethodDescriptor
) -> None:
    strategy = st.lists(request_bodies(method), min_size=1, max_size=3 if method.client_streaming else 1)

    @_settings()
    @given(strategy)
    def fuzz(bodies: list[bytes]) -> None:
        code, details, size = _invoke(channels[service], method, bodies)
        if code == ALLOWED_TO_TIME_OUT and method.server_streaming:
            return
        _check_reply(method, bodies, code, details, size)

    fuzz()
    dead = [name for name, proc in services.items() if not proc.alive()]
    assert not dead, f"died: {dead}: " + json.dumps({n: services[n].logs()[-2000:] for n in dead})


def test_every_process_is_alive_and_serving_after_the_fuzz(services: dict[str, ServiceProcess]) -> None:
    for name, proc in services.items():
        assert proc.alive(), f"{name} died:\n{proc.logs()[-3000:]}"
        wait_serving(proc.addr, broken=proc.exited)  # no time bound; at once a failure if it exits
