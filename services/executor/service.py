"""The executor's use cases: run a template once, report capacity, keep the caches warm.

A run: validate → template (LRU, else the registry) → verify locally (trust.py) → compiled module
(memory, disk, registry; modules.py) → link against the granted tools → queue on the worker pool → stream
the worker's events from its thread into this coroutine through `loop.call_soon_threadsafe` and an
asyncio.Queue. Anything refused before the pool accepts the run raises without a single event. After
the RunFinished event the call ends with the status the outcome maps to (see README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from services.common.cache import LruTtlCache
from services.common.errors import (
    AgentFactoryError,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
)
from services.common.telemetry import current_traceparent, resumed, span
from services.executor import metrics
from services.executor.events import Accepted, Finished, LimitKind, Outcome, RunEvent, Started
from services.executor.files import Mounts, TemplateFiles
from services.executor.kvstore import KvStore
from services.executor.modules import Compiled, ModuleCache, cache_key
from services.executor.pool import Capacity, WorkerPool
from services.executor.sandbox import AgentTools, Prepared, RunSpec, RunState, Sandbox, ToolContext
from services.executor.trust import Trust, Verified
from services.templates.policy import Policy
from services.templates.published import PublishedTemplate

log = logging.getLogger(__name__)

MAX_INPUT_BYTES = 1024 * 1024
MAX_AGENT_ID = 256
TEMPLATE_TTL_SECONDS = 300.0
# A template whose run outgrew the inline fuel budget goes through the pool for this long, then gets
# another inline try (templates change their inputs; a rare long run should not pin it forever).
INLINE_RETRY_SECONDS = 60.0


@dataclass(frozen=True)
class RunCommand:
    agent_id: str
    template_name: str
    template_version: str
    input: bytes


@dataclass(frozen=True)
class TemplateChange:
    revision: int
    deprecated: bool
    template: PublishedTemplate


class TemplateSource(Protocol):
    """The registry, as the executor needs it. Raises NotFound / Unavailable (domain errors)."""

    async def get_template(self, name: str, version: str) -> PublishedTemplate: ...

    async def fetch_module(self, sha256: str, max_bytes: int) -> bytes: ...

    async def list_published(self) -> list[PublishedTemplate]: ...

    def watch(self, after_revision: int) -> AsyncIterator[TemplateChange]: ...


@dataclass(frozen=True)
class Ready:
    """Everything a run needs, all of it verified."""

    verified: Verified
    prepared: Prepared
    cache_level: str


class ExecutorService:
    def __init__(
        self,
        executor_id: str,
        source: TemplateSource,
        trust: Trust,
        modules: ModuleCache,
        sandbox: Sandbox,
        pool: WorkerPool,
        kv: KvStore,
        policy: Policy,
        template_cache_entries: int = 1024,
        inline_fuel: int = 0,
        files: TemplateFiles | None = None,
    ) -> None:
        self.executor_id = executor_id
        self.source = source
        self.trust = trust
        self.modules = modules
        self.sandbox = sandbox
        self.pool = pool
        self.kv = kv
        self.policy = policy
        self._templates: LruTtlCache[tuple[str, str], PublishedTemplate] = LruTtlCache(
            "executor_templates", template_cache_entries, TEMPLATE_TTL_SECONDS
        )
        self._inflight: dict[str, asyncio.Future[tuple[Compiled, str]]] = {}
        self.last_revision = 0
        self.inline_fuel = inline_fuel
        self.files = files  # None: templates that ship files are refused (FAILED_PRECONDITION)
        self._pool_only_until: dict[str, float] = {}  # template ref -> monotonic time of its next inline try

    # --- run ---------------------------------------------------------------------------------------

    @staticmethod
    def validate(cmd: RunCommand) -> None:
        if not cmd.template_name:
            raise InvalidArgument("template_name is required", field="template_name")
        if not cmd.template_version:
            raise InvalidArgument("template_version is required (an exact version)", field="template_version")
        if len(cmd.input) > MAX_INPUT_BYTES:
            raise InvalidArgument(f"input is {len(cmd.input)} bytes; at most {MAX_INPUT_BYTES}", field="input")
        if len(cmd.agent_id) > MAX_AGENT_ID:
            raise InvalidArgument(f"agent_id is longer than {MAX_AGENT_ID} characters", field="agent_id")

    async def run(self, cmd: RunCommand) -> AsyncIterator[list[RunEvent]]:
        """The run's events in batches: whatever was ready together goes out as one message (each
        message costs every hop a fixed amount of CPU). The batch with Finished is the last."""
        self.validate(cmd)
        try:
            ready = await self.ready(cmd.template_name, cmd.template_version)
        except AgentFactoryError as exc:
            metrics.REFUSALS.labels(exc.code_name.lower()).inc()
            raise
        # Only a template that ships files pays for them (a lookup of its cached tree, built once); such a
        # run is never inline (Prepared.pure is false) and its pool job releases the mount when it ends.
        mounts = await self._mount(ready) if ready.verified.manifest.files else None
        if self._inline_candidate(ready):
            events = self._run_inline(cmd, ready)
            if events is not None:
                yield [Accepted(self.executor_id), *events]
                _raise_status(_last_finished(events))
                return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[RunEvent]] = asyncio.Queue()
        state = RunState(self._spec(cmd, ready, lambda batch: None), 0.0)
        if mounts is not None:
            state.spec.mounts = mounts.dirs

        def sink(batch: list[RunEvent]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, batch)
            except RuntimeError:  # the event loop is gone (shutdown): nobody is listening any more
                state.cancel()

        state.spec.sink = sink

        traceparent = current_traceparent()  # the worker thread joins this request's trace

        def job() -> None:
            try:
                if state.cancelled:
                    return
                sink([Accepted(self.executor_id)])
                with resumed(traceparent), span("sandbox_run", template=ready.verified.manifest.ref):
                    finished = self.sandbox.run(ready.prepared, state)
                _record(finished)
            finally:
                if mounts is not None:  # the run, not the stream, ends the mount's use (a cancel ends first)
                    mounts.release()

        try:
            self.pool.submit(job)
        except ResourceExhausted:
            metrics.REFUSALS.labels("pool_full").inc()
            if mounts is not None:
                mounts.release()
            raise
        try:
            while True:
                batch = await queue.get()
                while not queue.empty():  # the worker got ahead of us: send all of it at once
                    batch = batch + queue.get_nowait()
                yield batch
                if isinstance(batch[-1], Finished):
                    _raise_status(batch[-1])
                    return
        finally:
            state.cancel()  # the caller went away (or we are done): stop within one epoch tick

    async def _mount(self, ready: Ready) -> Mounts:
        manifest = ready.verified.manifest
        if self.files is None:
            raise FailedPrecondition(f"{manifest.ref} ships files, which this executor does not mount")
        mounts = self.files.acquire_cached(manifest.files)  # the per-run path: a lookup, nothing built
        if mounts is not None:
            return mounts
        try:
            with span("template_files", template=manifest.ref, files=len(manifest.files)):
                return await self.files.acquire(manifest.files)
        except FailedPrecondition:
            metrics.VERIFICATION_FAILURES.labels("files").inc()
            raise

    # --- the inline fast path ----------------------------------------------------------------------
    #
    # A pool run costs two thread hand-offs (loop -> worker, worker -> loop), each a wake-up and a GIL
    # transfer: for a tiny agent that is more than the run itself (perf/NOTES.md). A run that cannot
    # wait on anything (Prepared.pure: no tool, no poll_oneoff) and needs little fuel is bounded by its
    # fuel: under `inline_fuel` it runs in well under a millisecond, so it runs right here on the event
    # loop's thread. Events are collected, not streamed: if the run outgrows the budget it is thrown
    # away (it had no effect outside its own store and buffers) and run again through the pool with the
    # template's real limits, and the template goes through the pool for INLINE_RETRY_SECONDS.

    def _inline_candidate(self, ready: Ready) -> bool:
        if self.inline_fuel <= 0 or not ready.prepared.pure or not self.pool.has_room():
            return False
        until = self._pool_only_until.get(ready.verified.manifest.ref)
        return until is None or until <= time.monotonic()

    def _run_inline(self, cmd: RunCommand, ready: Ready) -> list[RunEvent] | None:
        manifest = ready.verified.manifest
        events: list[RunEvent] = []
        spec = self._spec(cmd, ready, events.extend)
        budget = min(self.inline_fuel, manifest.limits.fuel)
        spec.limits = dataclasses.replace(manifest.limits, fuel=budget)
        with span("sandbox_run", template=manifest.ref, inline=True):
            finished = self.sandbox.run(ready.prepared, RunState(spec, 0.0))
        if finished.limit is LimitKind.FUEL and budget < manifest.limits.fuel:
            if len(self._pool_only_until) > 4096:
                self._pool_only_until.clear()
            self._pool_only_until[manifest.ref] = time.monotonic() + INLINE_RETRY_SECONDS
            metrics.INLINE_RUNS.labels("outgrown").inc()
            return None
        metrics.INLINE_RUNS.labels("inline").inc()
        _record(finished)
        return events

    def _spec(self, cmd: RunCommand, ready: Ready, sink: Callable[[list[RunEvent]], None]) -> RunSpec:
        manifest = ready.verified.manifest
        tools = frozenset(manifest.tools)
        host = None
        if tools - {"scratch"}:
            host = AgentTools(
                ToolContext(
                    agent_id=cmd.agent_id,
                    kv=self.kv if "kv" in tools else None,
                    http_allowed=lambda host_port: self.policy.allows_http(manifest, host_port),
                )
            )
        return RunSpec(
            limits=manifest.limits,
            input=cmd.input,
            argv=[manifest.name, *manifest.args],
            env=dict(manifest.env),
            tools=tools,
            started=Started(manifest.module_sha256, ready.verified.key_version, ready.cache_level),
            sink=sink,
            tool_host=host,
        )

    def capacity(self) -> Capacity:
        return self.pool.capacity()

    # --- getting a template ready ------------------------------------------------------------------

    async def template(self, name: str, version: str) -> PublishedTemplate:
        found = self._templates.get((name, version))
        if found is None:
            found = await self.source.get_template(name, version)
            self._templates.put((name, version), found)
        return found

    async def ready(self, name: str, version: str, evict: bool = True) -> Ready:
        """`evict=False` for background fill-ins: the compiled module takes only free room in memory."""
        with span("template_lookup", template=f"{name}@{version}"):
            template = await self.template(name, version)
        with span("verify_signature", template=f"{name}@{version}", key_version=template.signature.key_version):
            verified = await self.trust.verify(template, name, version)
        manifest = verified.manifest
        with span("module_lookup", module_sha256=manifest.module_sha256):
            scratch = "scratch" in manifest.tools  # such a tool set runs the module compiled for it (modules.py)
            compiled, level = await self._compiled(manifest.module_sha256, template.module_size, evict, scratch)
        try:
            prepared = self.modules.link(compiled, frozenset(manifest.tools), manifest.ref, bool(manifest.files))
        except FailedPrecondition:
            metrics.VERIFICATION_FAILURES.labels("link").inc()
            raise
        return Ready(verified, prepared, level)

    async def _compiled(
        self, digest: str, module_size: int, evict: bool = True, scratch: bool = False
    ) -> tuple[Compiled, str]:
        found = self.modules.from_memory(digest, scratch)
        if found is not None:
            return found, "memory"
        key = cache_key(digest, scratch)
        pending = self._inflight.get(key)
        if pending is not None:  # single flight: one fetch and compile per module at a time
            return await asyncio.shield(pending)
        future: asyncio.Future[tuple[Compiled, str]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved, even if nobody waits
        self._inflight[key] = future
        try:
            compiled = await asyncio.to_thread(self.modules.from_disk, digest, evict, scratch)
            level = "disk"
            if compiled is None:
                if module_size > self.modules.max_bytes:
                    raise FailedPrecondition(
                        f"module is {module_size} bytes; the policy allows at most {self.modules.max_bytes} "
                        "(rule module.max_bytes)"
                    )
                wasm = await self.source.fetch_module(digest, self.modules.max_bytes)
                metrics.MODULE_CACHE.labels("registry", "hit").inc()
                compiled = await asyncio.to_thread(self.modules.compile, digest, wasm, evict, scratch)
                level = "registry"
            future.set_result((compiled, level))
            return compiled, level
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            del self._inflight[key]

    # --- hot reload --------------------------------------------------------------------------------

    async def prepare(self, template: PublishedTemplate) -> bool:
        """Verify, compile and link a published template ahead of its first run, in free room only (a
        fill-in never evicts a module runs are using; the compiled artifact still lands on disk). Never
        raises."""
        manifest = template.manifest
        self._templates.put((manifest.name, manifest.version), template)
        try:
            await self.ready(manifest.name, manifest.version, evict=False)
            return True
        except AgentFactoryError as exc:
            log.warning("cannot precompile %s: %s", template.ref, exc.message)
            return False

    def forget(self, template: PublishedTemplate) -> None:
        """A deprecated version: stop keeping it warm. It still runs if asked (agents already using it)."""
        self._templates.invalidate((template.manifest.name, template.manifest.version))
        self.modules.drop(template.manifest.module_sha256)

    async def catalog(self) -> list[PublishedTemplate]:
        """Every published, non-deprecated template, most recent first; sets the revision to watch from."""
        templates = await self.source.list_published()
        revision = max((t.revision for t in templates), default=0)
        self.last_revision = max(self.last_revision, revision)
        return sorted(templates, key=lambda t: t.revision, reverse=True)

    async def fill(self, templates: list[PublishedTemplate]) -> int:
        """Load compiled modules in the given order (most recent first) while memory has free room: from
        disk when the artifact is there, else fetched and compiled. A module whose expected size does not
        fit is skipped (its first run loads it); it stops when memory is full. Returns how many loaded."""
        loaded = 0
        for template in templates:
            if not self.modules.fits_in_memory(1):
                break
            digest = template.manifest.module_sha256
            scratch = "scratch" in template.manifest.tools
            if self.modules.fits_in_memory(self.modules.expected_size(digest, template.module_size, scratch)):
                await self.prepare(template)
                loaded += cache_key(digest, scratch) in self.modules.memory
                metrics.WARMUP_TEMPLATES.labels("loaded").set(loaded)
        metrics.WARMUP_TEMPLATES.labels("left_cold").set(len(templates) - loaded)
        metrics.WARMUP_DONE.set(1)
        log.info(
            "module cache warmed",
            extra={"fields": {"templates": len(templates), "loaded": loaded, "bytes": self.modules.memory.bytes}},
        )
        return loaded

    async def warm(self) -> int:
        """catalog() then fill(): the start-up warm-up in one call; returns the revision to watch from."""
        await self.fill(await self.catalog())
        return self.last_revision

    async def watch(self, stop: asyncio.Event, backoff_max: float = 10.0) -> None:
        """Follow the registry's Watch stream from the last seen revision, reconnecting with backoff."""
        backoff = 0.2
        while not stop.is_set():
            try:
                async for change in self.source.watch(self.last_revision):
                    backoff = 0.2
                    self.last_revision = max(self.last_revision, change.revision)
                    if change.deprecated:
                        self.forget(change.template)
                    else:
                        await self.prepare(change.template)
            except AgentFactoryError as exc:
                log.info("registry watch interrupted: %s", exc.message)
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, backoff_max)


def _record(finished: Finished) -> None:
    metrics.RUNS.labels(finished.outcome.value, finished.limit.value).inc()
    metrics.FUEL_USED.observe(finished.fuel_used)
    metrics.PEAK_MEMORY.observe(finished.peak_memory_bytes)
    metrics.RUN_SECONDS.observe(finished.duration_seconds)


def _last_finished(events: list[RunEvent]) -> Finished:
    last = events[-1]
    assert isinstance(last, Finished), "a run's events end with Finished"
    return last


def _raise_status(finished: Finished) -> None:
    """After RunFinished: OK for SUCCEEDED/FAILED, else the status the outcome maps to."""
    if finished.outcome is Outcome.RESOURCE_EXHAUSTED:
        raise ResourceExhausted(finished.reason)
    if finished.outcome is Outcome.TIMED_OUT:
        raise DeadlineExceeded(finished.reason)
    if finished.outcome is Outcome.CANCELLED:
        raise Cancelled(finished.reason)
