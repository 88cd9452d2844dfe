"""A small synchronous client for Agent Factory, used by afctl, `make run` and the tests.

It talks either to each service directly (plaintext loopback, for development) or to the gateway
(one address, mTLS client certificate and/or a JWT bearer token). Every call has a deadline.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from afctl.watching import WatchedOutput
from agentfactory.registry.v1 import registry_service_pb2 as reg_pb
from agentfactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from agentfactory.registry.v1 import template_pb2
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from agentfactory.scheduler.v1 import scheduler_service_pb2_grpc as sch_grpc
from agentfactory.signer.v1 import signer_service_pb2 as sig_pb
from agentfactory.signer.v1 import signer_service_pb2_grpc as sig_grpc
from services.common import mesh_headers
from services.templates.signature import Keyring, PublicKeyVersion, SignatureRecord

CHUNK_BYTES = 256 * 1024
DEFAULT_TIMEOUT = 10.0
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Tls:
    """Client TLS material: the mesh CA and this client's certificate and key (PEM files).

    Without a certificate and key the channel is still TLS (the server is verified against the CA);
    the caller then authenticates with a JWT."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None
    server_name: str = ""


@dataclass(frozen=True)
class Endpoints:
    registry: str
    signer: str
    scheduler: str
    tls: Tls | None = None
    token: str | None = None
    # Every call goes to this color of a blue/green service (the mesh honours x-agentfactory-color).
    color: str | None = None

    @classmethod
    def gateway(
        cls, addr: str, tls: Tls | None = None, token: str | None = None, color: str | None = None
    ) -> Endpoints:
        return cls(addr, addr, addr, tls, token, color)


def open_channel(addr: str, tls: Tls | None) -> grpc.Channel:
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if tls is None:
        return grpc.insecure_channel(addr, options=options)
    creds = grpc.ssl_channel_credentials(
        root_certificates=tls.ca.read_bytes(),
        private_key=tls.key.read_bytes() if tls.key else None,
        certificate_chain=tls.cert.read_bytes() if tls.cert else None,
    )
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.secure_channel(addr, creds, options=options)


class Client:
    def __init__(self, endpoints: Endpoints, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self._channels: dict[str, grpc.Channel] = {}
        self.registry = reg_grpc.RegistryServiceStub(self._channel(endpoints.registry))
        self.signer = sig_grpc.SignerServiceStub(self._channel(endpoints.signer))
        self.scheduler = sch_grpc.SchedulerServiceStub(self._channel(endpoints.scheduler))

    def _channel(self, addr: str) -> grpc.Channel:
        if addr not in self._channels:
            self._channels[addr] = open_channel(addr, self.endpoints.tls)
        return self._channels[addr]

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        md = []
        if self.endpoints.token:
            md.append(("authorization", f"Bearer {self.endpoints.token}"))
        if self.endpoints.color:
            md.append((mesh_headers.COLOR, self.endpoints.color))
        return tuple(md)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- registry ---------------------------------------------------------------------------------

    def publish(
        self,
        manifest_json: bytes,
        module: bytes | None,
        progress: Callable[[int], None] | None = None,
        files: Mapping[str, bytes] | None = None,
    ) -> reg_pb.PublishTemplateResponse:
        """Upload a manifest, (optionally) its module and its read-only files (guest path -> bytes) in
        chunks: the module's bytes, then each file's, in one stream. Sets module_sha256 when absent.
        ``progress`` hears the size of each chunk as gRPC takes it (a progress bar for people)."""
        if module is not None:
            manifest = json.loads(manifest_json)
            manifest.setdefault("module_sha256", hashlib.sha256(module).hexdigest())
            manifest_json = json.dumps(manifest).encode()
        parts = [module or b"", *(files or {}).values()]

        def requests() -> Iterator[reg_pb.PublishTemplateRequest]:
            listed = [reg_pb.PublishFile(path=path, size=len(data)) for path, data in (files or {}).items()]
            header = reg_pb.PublishHeader(manifest_json=manifest_json, module_size=len(parts[0]), files=listed)
            yield reg_pb.PublishTemplateRequest(header=header)
            for data in parts:
                for start in range(0, len(data), CHUNK_BYTES):
                    chunk = data[start : start + CHUNK_BYTES]
                    yield reg_pb.PublishTemplateRequest(chunk=chunk)
                    if progress is not None:
                        progress(len(chunk))

        reply: reg_pb.PublishTemplateResponse = self.registry.PublishTemplate(
            requests(), timeout=self.timeout * 3, metadata=self.metadata
        )
        return reply

    def get_template(self, name: str, version: str = "") -> template_pb2.Template:
        request = reg_pb.GetTemplateRequest(name=name, version=version)
        template: template_pb2.Template = self.registry.GetTemplate(
            request, timeout=self.timeout, metadata=self.metadata
        ).template
        return template

    def list_templates(self, **filters: Any) -> list[template_pb2.Template]:  # ListTemplatesRequest's fields
        templates: list[template_pb2.Template] = []
        token = ""
        while True:
            request = reg_pb.ListTemplatesRequest(page_token=token, **filters)
            page = self.registry.ListTemplates(request, timeout=self.timeout, metadata=self.metadata)
            templates.extend(page.templates)
            token = page.next_page_token
            if not token:
                return templates

    def fetch_module(self, sha256: str) -> bytes:
        request = reg_pb.FetchModuleRequest(sha256=sha256)
        stream = self.registry.FetchModule(request, timeout=self.timeout * 3, metadata=self.metadata)
        return b"".join(chunk.chunk for chunk in stream)

    # --- signer -----------------------------------------------------------------------------------

    def public_keys(self) -> sig_pb.GetPublicKeysResponse:
        reply: sig_pb.GetPublicKeysResponse = self.signer.GetPublicKeys(
            sig_pb.GetPublicKeysRequest(), timeout=self.timeout, metadata=self.metadata
        )
        return reply

    def keyring(self) -> Keyring:
        reply = self.public_keys()
        keys = [PublicKeyVersion(k.key_id, k.key_version, k.public_key_pem) for k in reply.keys]
        return Keyring(keys, {k.key_id: reply.min_version for k in reply.keys})

    def verify_offline(self, template: template_pb2.Template, module: bytes | None = None) -> int:
        """Verify a template with the published public keys only (no Verify RPC). Returns the key version.
        With `module`, also checks the module's digest against the signed manifest."""
        record = SignatureRecord(
            template.signature.key_id, template.signature.key_version, template.signature.signature
        )
        self.keyring().verify(template.canonical_manifest, record)
        signed = json.loads(template.canonical_manifest)
        if module is not None and hashlib.sha256(module).hexdigest() != signed["module_sha256"]:
            raise ValueError("module digest does not match the signed manifest")
        return record.key_version

    def resign(self, name: str = "", version: str = "", all_revoked: bool = False) -> reg_pb.ResignTemplatesResponse:
        """Re-sign one template, or every template whose key version is revoked (admin)."""
        request = reg_pb.ResignTemplatesRequest(name=name, version=version, all_revoked=all_revoked)
        # Re-signing every revoked template is one signer call each: give it more than a unary call's time.
        reply: reg_pb.ResignTemplatesResponse = self.registry.ResignTemplates(
            request, timeout=max(self.timeout, 300.0), metadata=self.metadata
        )
        return reply

    def rotate_key(self) -> sig_pb.RotateKeyResponse:
        reply: sig_pb.RotateKeyResponse = self.signer.RotateKey(
            sig_pb.RotateKeyRequest(), timeout=self.timeout, metadata=self.metadata
        )
        return reply

    # --- scheduler --------------------------------------------------------------------------------

    def run_agent(
        self,
        name: str,
        input_bytes: bytes = b"",
        version: str = "",
        timeout: float | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
        **kw: Any,  # more RunAgentRequest fields
    ) -> Iterator[sch_pb.RunAgentResponse]:
        """`metadata` is sent with the call (e.g. a W3C `traceparent`, to know the trace id of the run)."""
        request = sch_pb.RunAgentRequest(template_name=name, template_version=version, input=input_bytes, **kw)
        events: Iterator[sch_pb.RunAgentResponse] = self.scheduler.RunAgent(
            request, timeout=timeout or self.timeout * 3, metadata=self.metadata + tuple(metadata)
        )
        return events

    def run_to_end(self, name: str, input_bytes: bytes = b"", **kw: Any) -> tuple[sch_pb.Agent, bytes]:
        """Run an agent and return its final state and its whole output (of its last attempt, when a run
        lost with its executor started over: afctl/watching.py)."""
        final = sch_pb.Agent()
        output = WatchedOutput()
        for event in self.run_agent(name, input_bytes, **kw):
            output.on_event(event)
            if event.WhichOneof("event") == "agent":
                final = event.agent
        return final, bytes(output.printed)
