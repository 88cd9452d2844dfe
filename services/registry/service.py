"""The registry's domain: publish, read, deprecate and watch templates. No grpc, no protobuf.

Publish runs parse → receive module (size cap, wasm magic, hashing into a temp file) → resolve
inheritance → idempotency/immutability check → policy → sign → store, and only the last step
(commit + event fan-out) is serialized, so watchers see events in revision order.

Decisions worth knowing:
- A deprecated parent cannot be extended by a *new* template (it was deprecated for a reason);
  republishing an existing child of it stays idempotent.
- Re-publishing an identical template returns the stored one (`created=False`) without re-signing,
  unless its signature names a key version the signer no longer serves (revoked or lost): then it is
  re-signed in place (same content, new signature, a 'published' event, a `resign` audit record).
- `resign` does the same on demand for one template or for every template with such a signature.
- FetchModule hashes the blob as it streams and holds back the last chunk until the digest checks
  out, so a client never receives a whole module from a damaged blob with an OK status.
- Deprecating an already deprecated version changes nothing and emits no event.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from services.common import audit, listing
from services.common.cache import LruTtlCache
from services.common.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    quote,
)
from services.common.logs import log_event
from services.registry.ports import BlobUpload, TemplateStore
from services.registry.storage import (
    KIND_DEPRECATED,
    KIND_PUBLISHED,
    MAX_CANONICAL_BYTES,
    EventRow,
    ListCursor,
    PublishRace,
)
from services.registry.upload import PartStream
from services.registry.watch import TemplateEvent, WatchHub
from services.templates.manifest import (
    NAME_RE,
    SHA256_RE,
    Draft,
    Manifest,
    TemplateFile,
    check_file_path,
    parse_draft,
    resolve,
)
from services.templates.policy import Policy
from services.templates.published import PublishedTemplate
from services.templates.semver import Version
from services.templates.signature import SignatureRecord

log = logging.getLogger(__name__)

MAX_CHUNK_BYTES = 1024 * 1024
FETCH_CHUNK_BYTES = 1024 * 1024
WASM_HEADER_BYTES = 8
WASM_MAGIC = b"\0asm"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_REASON_CHARS = 1024
REPLAY_PAGE = 256

T = TypeVar("T")


class Signer(Protocol):
    """The signing port. The gRPC adapter raises Unavailable when the signer cannot be reached."""

    async def sign(self, payload: bytes) -> SignatureRecord: ...

    async def live_keys(self) -> frozenset[tuple[str, int]]:
        """(key id, version) of every key version that still verifies."""
        ...


@dataclass(frozen=True)
class ResignResult:
    templates: list[PublishedTemplate]
    unchanged: int


@dataclass(frozen=True)
class PublishResult:
    template: PublishedTemplate
    created: bool


@dataclass(frozen=True)
class ListPage:
    templates: list[PublishedTemplate]
    next_page_token: str


def _check_name(name: str) -> None:
    if not name:
        raise InvalidArgument("name is required", field="name")
    if not NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"name {quote(name)} must start with a letter and use lower-case letters, digits and dashes", field="name"
        )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_difference(old: Manifest, new: Manifest) -> str:
    """Name the first field (or sub-key) where two resolved manifests differ."""
    before, after = old.to_dict(), new.to_dict()
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(a.keys() | b.keys()):
                if a.get(sub) != b.get(sub):
                    return f"{key}.{sub} (published {_short(a.get(sub))}, this one {_short(b.get(sub))})"
        return f"{key} (published {_short(a)}, this one {_short(b)})"
    return "content"


class Registry:
    def __init__(
        self,
        store: TemplateStore,
        policy: Policy,
        signer: Signer,
        cache: LruTtlCache[tuple[str, str], PublishedTemplate],
        hub: WatchHub,
    ) -> None:
        self.store = store
        self.policy = policy
        self.signer = signer
        self.cache = cache
        self.hub = hub
        self._write_lock = asyncio.Lock()
        # Shared store only: set after a write so watch_feed.follow_store reads the new event at once.
        self.feed_wake = asyncio.Event()
        # The signer's live key versions as last pushed (None until the first push): reads mark templates
        # signed by anything else as revoked, so the scheduler can refuse them at create.
        self.live_keys: frozenset[tuple[str, int]] | None = None

    def _announce(self, event: TemplateEvent) -> None:
        """Tell watchers about a write: through this process's hub, or, on a store other replicas write
        too, by waking the feed that reads every replica's events in revision order (watch_feed.py): a
        local event published here could overtake another replica's smaller revision."""
        if self.store.shared:
            self.feed_wake.set()
        else:
            self.hub.publish(event)

    def revoked(self, template: PublishedTemplate) -> bool:
        return self.live_keys is not None and _signed_by(template) not in self.live_keys

    @staticmethod
    async def _io(fn: Callable[..., T], *args: Any) -> T:
        """Store calls block (SQLite, fsync); run them off the event loop."""
        return await asyncio.to_thread(fn, *args)

    # --- reads ------------------------------------------------------------------------------------

    def _load(self, name: str, version: str) -> PublishedTemplate | None:
        """Blocking: cache, then disk. Absent templates are not cached (they may appear any moment)."""
        key = (name, version)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        template = self.store.get(name, version)
        if template is not None:
            self.cache.put(key, template)
        return template

    def _load_page(self, refs: list[ListCursor]) -> list[PublishedTemplate]:
        """Blocking: one listing page in one thread hop. Served from the cache where it holds a template,
        but a listing never fills it: a walk over the whole catalog must not push out the templates that
        executors and schedulers keep asking for (issue 15: a full walk past the cache's size churned it)."""
        out: list[PublishedTemplate] = []
        for ref in refs:
            template = self.cache.get((ref.name, ref.version)) or self.store.get(ref.name, ref.version)
            if template is not None:  # vanished between the two reads: impossible today (no delete)
                out.append(template)
        return out

    async def get(self, name: str, version: str) -> PublishedTemplate:
        _check_name(name)
        if not version:
            latest = await self._io(self.store.latest_version, name)
            if latest is None:
                if await self._io(self.store.has_name, name):
                    raise NotFound(f"every version of template {name} is deprecated; ask for an exact version")
                raise NotFound(f"template {name} is not published")
            version = latest
        else:
            Version(version)
        template = await self._io(self._load, name, version)
        if template is None:
            raise NotFound(f"template {name}@{version} is not published")
        return template

    async def list(
        self, name: str, label_selector: str, page_size: int, page_token: str, include_deprecated: bool
    ) -> ListPage:
        if name:
            _check_name(name)
        labels = listing.parse_label_selector(label_selector)
        size = DEFAULT_PAGE_SIZE if page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
        fingerprint = hashlib.sha256(json.dumps([name, sorted(labels), include_deprecated]).encode()).hexdigest()[:16]
        after = ListCursor.decode(page_token, fingerprint) if page_token else None
        refs = await self._io(self.store.list_refs, name, labels, include_deprecated, after, size + 1)
        more = len(refs) > size
        refs = refs[:size]
        templates = await self._io(self._load_page, refs)
        token = refs[-1].encode(fingerprint) if more and refs else ""
        return ListPage(templates, token)

    async def fetch_module(self, sha256: str) -> AsyncIterator[tuple[bytes, int]]:
        """Yield (chunk, total_size). Verifies the digest while streaming (see the module docstring)."""
        if not SHA256_RE.fullmatch(sha256):
            raise InvalidArgument("sha256 must be 64 lower-case hex digits", field="sha256")
        handle = await self._io(self.store.open_blob, sha256)
        try:
            total = os.fstat(handle.fileno()).st_size
            digest = hashlib.sha256()
            held: bytes | None = None
            while True:
                chunk = await self._io(handle.read, FETCH_CHUNK_BYTES)
                if not chunk:
                    break
                digest.update(chunk)
                if held is not None:
                    yield held, total
                held = chunk
            if digest.hexdigest() != sha256:
                log_event(log, "module blob failed its digest check", level=logging.ERROR, sha256=sha256)
                raise DataLoss(
                    f"module {sha256} on disk no longer matches its digest (found {digest.hexdigest()}); "
                    "discard what was received; the operator must restore it from a backup"
                )
            if held is not None:
                yield held, total
        finally:
            handle.close()

    # --- watch ------------------------------------------------------------------------------------

    async def _event(self, revision: int, kind: str, name: str, version: str) -> TemplateEvent:
        template = await self._io(self._load, name, version)
        if template is None:
            raise DataLoss(f"event {revision} names {name}@{version}, which is not stored")
        if kind == KIND_PUBLISHED:
            # The template as it was right after publishing (deprecation is one-way and has its own event).
            template = replace(template, deprecated=False, deprecation_reason="")
        return TemplateEvent(revision, kind, template)

    async def watch(self, after_revision: int) -> AsyncIterator[TemplateEvent]:
        """Replay stored events after `after_revision`, then follow live ones. Subscribing before the
        replay and skipping revisions already sent closes the gap between the two without duplicates.
        Only a watcher too slow to keep up with *live* events is dropped (RESOURCE_EXHAUSTED)."""
        sub = self.hub.subscribe()
        last = after_revision
        try:
            while True:
                rows: list[EventRow] = await self._io(self.store.events_after, last, REPLAY_PAGE)
                if rows:
                    for row in rows:
                        yield await self._event(row.revision, row.kind, row.name, row.version)
                        last = row.revision
                    continue
                if sub.lagging:
                    # Live events outran the replay and their queue was dropped; they are all in the
                    # store, so subscribe afresh and read the store again instead of failing the watch.
                    sub.close()
                    sub = self.hub.subscribe()
                    continue
                break
            while True:
                event = await sub.next()
                if event is None:
                    raise ResourceExhausted(
                        f"this watcher fell more than {self.hub.queue_capacity} events behind and was dropped; "
                        f"resubscribe with after_revision={last}"
                    )
                if event.revision <= last:
                    continue
                yield event
                last = event.revision
        finally:
            sub.close()

    # --- writes -----------------------------------------------------------------------------------

    async def deprecate(self, name: str, version: str, reason: str) -> PublishedTemplate:
        _check_name(name)
        if not version:
            raise InvalidArgument("version is required: deprecation names one exact version", field="version")
        Version(version)
        if len(reason) > MAX_REASON_CHARS:
            raise InvalidArgument(f"reason is longer than {MAX_REASON_CHARS} characters", field="reason")
        async with self._write_lock:
            revision = await self._io(self.store.deprecate, name, version, reason)
            template = await self._io(self.store.get, name, version)
            if template is None:  # cannot happen: deprecate() raised NotFound
                raise NotFound(f"template {name}@{version} is not published")
            self.cache.put((name, version), template)
            if revision is not None:
                self._announce(TemplateEvent(revision, KIND_DEPRECATED, template))
                audit.record("deprecate", target=template.ref, revision=revision, reason=reason)
        return template

    async def _receive_module(self, module_size: int, chunks: AsyncIterator[bytes]) -> BlobUpload | None:
        limit = self.policy.max_module_bytes
        if module_size > limit:
            raise ResourceExhausted(
                f"module_size {module_size} exceeds the policy limit of {limit} bytes (rule module.max_bytes)"
            )
        writer: BlobUpload | None = None
        head = b""
        received = 0
        try:
            async for chunk in chunks:
                if module_size == 0:
                    raise InvalidArgument(
                        "module bytes arrived but the header's module_size is 0; set module_size to the module's "
                        "size, or send no chunks to inherit the parent's module",
                        field="module_size",
                    )
                if len(chunk) > MAX_CHUNK_BYTES:
                    raise InvalidArgument(
                        f"a module chunk of {len(chunk)} bytes exceeds the {MAX_CHUNK_BYTES}-byte chunk limit",
                        field="chunk",
                    )
                if received + len(chunk) > module_size:
                    raise InvalidArgument(
                        f"more module bytes arrived than the header's module_size {module_size}", field="module_size"
                    )
                if len(head) < WASM_HEADER_BYTES:
                    head += chunk[: WASM_HEADER_BYTES - len(head)]
                    if len(head) >= len(WASM_MAGIC) and not head.startswith(WASM_MAGIC):
                        raise InvalidArgument(
                            f"the module is not WebAssembly: it starts with {head[:4]!r}, not the magic b'\\x00asm'",
                            field="chunk",
                        )
                if writer is None:
                    writer = await self._io(self.store.new_blob)
                await self._io(writer.write, chunk)
                received += len(chunk)
            if received != module_size:
                if received == 0:
                    raise InvalidArgument(
                        f"module_size is {module_size} but no module bytes arrived", field="module_size"
                    )
                raise InvalidArgument(
                    f"the module stream ended after {received} of module_size {module_size} bytes",
                    field="module_size",
                )
        except BaseException:
            if writer is not None:
                await self._io(writer.discard)
            raise
        return writer

    async def publish(
        self,
        manifest_json: bytes,
        module_size: int,
        chunks: AsyncIterator[bytes],
        files: Sequence[tuple[str, int]] = (),
    ) -> PublishResult:
        """`files` are (guest path, size) of the template files whose bytes follow the module's."""
        draft = parse_draft(manifest_json)
        self._check_file_uploads(files)
        stream = PartStream(chunks)
        writer = await self._receive_module(module_size, stream.part(module_size))
        uploads: dict[str, BlobUpload] = {}
        try:
            for path, size in files:
                uploads[path] = await self._receive_file(path, size, stream.part(size))
            if await stream.has_more():
                if not files:
                    if module_size == 0:
                        raise InvalidArgument(
                            "module bytes arrived but the header's module_size is 0; set module_size to the module's "
                            "size, or send no chunks to inherit the parent's module",
                            field="module_size",
                        )
                    raise InvalidArgument(
                        f"more module bytes arrived than the header's module_size {module_size}", field="module_size"
                    )
                raise InvalidArgument(
                    "more bytes arrived than the header declares (module_size, then each file's size)", field="files"
                )
            if writer is not None and writer.size < WASM_HEADER_BYTES:  # checked after the overflow above
                raise InvalidArgument(
                    f"the module is {writer.size} bytes; a WebAssembly module has at least an 8-byte header",
                    field="chunk",
                )
            if writer is not None:
                # Compile cost is bounded at the door: section counts and sizes, read without compiling.
                violation = self.policy.module_violation(await self._io(writer.read_back))
                if violation is not None:
                    raise InvalidArgument(violation, field="chunk")
            return await self._publish(draft, writer, uploads)
        finally:
            for upload in [*([writer] if writer is not None else []), *uploads.values()]:
                await self._io(upload.discard)  # no-op once committed (the temp file was renamed)

    def _check_file_uploads(self, files: Sequence[tuple[str, int]]) -> None:
        """The header's file list against the path syntax and the policy, before any byte is received."""
        seen: set[str] = set()
        for i, (path, _size) in enumerate(files):
            check_file_path(path, f"files[{i}].path")
            if path in seen:
                raise InvalidArgument(f"files[{i}].path {quote(path)} is uploaded twice", field=f"files[{i}].path")
            seen.add(path)
        self.policy.file_bounds.check({path: TemplateFile("", size) for path, size in files})

    async def _receive_file(self, path: str, size: int, part: AsyncIterator[bytes]) -> BlobUpload:
        writer = await self._io(self.store.new_blob)
        try:
            async for piece in part:
                await self._io(writer.write, piece)
            if writer.size != size:
                raise InvalidArgument(
                    f"the stream ended after {writer.size} of file {path}'s {size} bytes", field="files"
                )
        except BaseException:
            await self._io(writer.discard)
            raise
        return writer

    async def _publish(
        self, draft: Draft, writer: BlobUpload | None, uploads: Mapping[str, BlobUpload] | None = None
    ) -> PublishResult:
        parents: dict[str, PublishedTemplate] = {}

        def load_parent(name: str, version: str) -> Manifest:
            template = self._load(name, version)
            if template is None:
                raise NotFound(f"template {name}@{version} is not published")
            parents[template.ref] = template
            return template.manifest

        uploaded = writer.sha256 if writer is not None else None
        uploaded_files = {path: TemplateFile(up.sha256, up.size) for path, up in (uploads or {}).items()}
        manifest = await self._io(resolve, draft, self.policy.default_limits, load_parent, uploaded, uploaded_files)
        canonical = manifest.canonical_bytes()
        if len(canonical) > MAX_CANONICAL_BYTES:
            raise InvalidArgument(
                f"the resolved manifest is {len(canonical)} bytes; the limit is {MAX_CANONICAL_BYTES}",
                field="manifest_json",
            )

        existing = await self._io(self._load, manifest.name, manifest.version)
        if existing is not None:
            result = self._same_or_conflict(existing, manifest)
            live = await self.signer.live_keys()
            if _signed_by(existing) not in live:  # revoked or lost key: re-sign in place (issue 10 item 9)
                return PublishResult(await self._resign(existing, "republish"), created=False)
            return result

        if manifest.extends:
            parent = parents[manifest.extends]
            if parent.deprecated:
                raise FailedPrecondition(
                    f"parent template {parent.ref} is deprecated ({parent.deprecation_reason or 'no reason given'}); "
                    "extend a version that is not deprecated"
                )
        if writer is not None:
            module_size = writer.size
        else:
            if not await self._io(self.store.blob_referenced, manifest.module_sha256):
                raise FailedPrecondition(f"module {manifest.module_sha256} is not stored; upload it with this manifest")
            module_size = await self._io(self.store.blob_size, manifest.module_sha256)
        self.policy.check(manifest)
        uploaded_digests = set(uploaded_files.values())
        await self._check_files_stored(manifest, {f.sha256 for f in uploaded_digests})

        signature = await self.signer.sign(canonical)
        if writer is not None:
            await self._io(writer.commit)
        for upload in (uploads or {}).values():
            await self._io(upload.commit)  # the same bytes twice are one blob (content-addressed)
        candidate = PublishedTemplate(
            manifest=manifest,
            canonical_manifest=canonical,
            signature=signature,
            module_size=module_size,
            revision=0,
            publish_time=0.0,
        )
        async with self._write_lock:
            # A concurrent publish of the same name@version may have won while we were signing.
            existing = await self._io(self.store.get, manifest.name, manifest.version)
            if existing is not None:
                return self._same_or_conflict(existing, manifest)
            try:
                stored = await self._io(self.store.insert, candidate)
            except PublishRace:  # another registry replica stored it first: answer as for an existing one
                existing = await self._io(self.store.get, manifest.name, manifest.version)
                if existing is None:
                    raise
                return self._same_or_conflict(existing, manifest)
            self.cache.put((manifest.name, manifest.version), stored)
            self._announce(TemplateEvent(stored.revision, KIND_PUBLISHED, stored))
        audit.record(
            "publish",
            target=stored.ref,
            revision=stored.revision,
            module_sha256=manifest.module_sha256,
            key_version=signature.key_version,
        )
        return PublishResult(stored, created=True)

    async def _check_files_stored(self, manifest: Manifest, uploaded: set[str]) -> None:
        """Every file the manifest names is uploaded now or a stored blob of the declared size: a signed
        manifest must never point at bytes no executor can fetch."""
        for path, entry in manifest.files.items():
            if entry.sha256 in uploaded:
                continue
            if not await self._io(self.store.has_blob, entry.sha256):
                raise FailedPrecondition(f"file {path} ({entry.sha256}) is not stored; upload it with this manifest")
            size = await self._io(self.store.blob_size, entry.sha256)
            if size != entry.size:
                raise InvalidArgument(
                    f"files.{path} declares {entry.size} bytes; the stored blob {entry.sha256} has {size}",
                    field=f"files.{path}",
                )

    # --- re-signing -------------------------------------------------------------------------------

    async def resign(self, name: str, version: str, all_revoked: bool) -> ResignResult:
        """Re-sign one template (name@version) or every template whose key version is not live."""
        if all_revoked == bool(name or version):
            raise InvalidArgument(
                "give either name and version (one template) or all_revoked (every template signed by a key "
                "version the signer no longer serves), not both",
                field="all_revoked",
            )
        live = await self.signer.live_keys()
        if not all_revoked:
            _check_name(name)
            if not version:
                raise InvalidArgument("version is required: re-signing names one exact version", field="version")
            Version(version)
            template = await self._io(self._load, name, version)
            if template is None:
                raise NotFound(f"template {name}@{version} is not published")
            if _signed_by(template) in live:
                return ResignResult([], 1)
            return ResignResult([await self._resign(template, "resign")], 0)
        resigned, unchanged = [], 0
        after: tuple[str, str] | None = None
        while refs := await self._io(self.store.all_refs, after, REPLAY_PAGE):
            for ref in refs:
                template = await self._io(self._load, *ref)
                if template is None:
                    continue
                if _signed_by(template) in live:
                    unchanged += 1
                else:
                    resigned.append(await self._resign(template, "resign"))
            after = refs[-1]
        return ResignResult(resigned, unchanged)

    async def _resign(self, template: PublishedTemplate, why: str) -> PublishedTemplate:
        signature = await self.signer.sign(template.canonical_manifest)
        async with self._write_lock:
            revision = await self._io(
                self.store.update_signature, template.manifest.name, template.manifest.version, signature
            )
            stored = await self._io(self.store.get, template.manifest.name, template.manifest.version)
            if stored is None:  # cannot happen: update_signature raised NotFound
                raise NotFound(f"template {template.ref} is not published")
            self.cache.put((stored.manifest.name, stored.manifest.version), stored)
            self._announce(TemplateEvent(revision, KIND_PUBLISHED, stored))
        audit.record(
            "resign",
            target=stored.ref,
            revision=revision,
            reason=why,
            previous_key_id=template.signature.key_id,
            previous_key_version=template.signature.key_version,
            key_id=signature.key_id,
            key_version=signature.key_version,
        )
        return stored

    @staticmethod
    def _same_or_conflict(existing: PublishedTemplate, manifest: Manifest) -> PublishResult:
        if existing.canonical_manifest == manifest.canonical_bytes():
            return PublishResult(existing, created=False)
        raise AlreadyExists(
            f"template {manifest.ref} is already published with different content: "
            f"{describe_difference(existing.manifest, manifest)} differs; versions are immutable, publish a new version"
        )


def _signed_by(template: PublishedTemplate) -> tuple[str, int]:
    return template.signature.key_id, template.signature.key_version
