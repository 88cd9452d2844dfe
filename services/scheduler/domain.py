"""The agent lifecycle, pure: states, the allowed transitions, request validation, and how an executor
run's ending becomes an agent's terminal state. No I/O, no grpc; every function returns a new Agent.

    PENDING ──▶ RUNNING ──▶ SUCCEEDED | FAILED | CANCELLED | TIMED_OUT
       │           │
       │           └──▶ PENDING   (requeue: the executor was lost and the template is retryable)
       └──▶ FAILED | CANCELLED | TIMED_OUT   (never ran: refused, cancelled, or its deadline passed)

A terminal state never changes.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.common import listing
from services.common.errors import FailedPrecondition, InvalidArgument, quote
from services.templates.manifest import NAME_RE
from services.templates.semver import Version

MAX_INPUT_BYTES = 1024 * 1024
MAX_LABELS = 64
MAX_LABEL_VALUE = 256
MAX_REQUEST_ID = 128
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
LABEL_KEY_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._/-]{0,62}\Z")
_REQUEST_ID_RE = re.compile(r"\A[\x21-\x7e]+\Z")  # printable ASCII without spaces: it goes in logs and URLs


class AgentState(enum.IntEnum):
    """Numbered as the proto enum, so the servicer's mapping is the identity."""

    PENDING = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    CANCELLED = 5
    TIMED_OUT = 6

    @property
    def terminal(self) -> bool:
        return self >= AgentState.SUCCEEDED


class Cause(enum.StrEnum):
    """Why an agent reached its terminal state, as a small closed set (a metric label; the free-text
    reason is for people)."""

    SUCCEEDED = "succeeded"
    AGENT_FAILED = "agent_failed"  # non-zero exit or trap: the agent's own doing
    LIMIT = "limit"  # fuel, memory, output or tool-call limit
    TIMED_OUT = "timed_out"  # the template's wall clock or the caller's deadline
    CANCELLED = "cancelled"
    REJECTED = "rejected"  # the executor refused it: verification, unknown template, bad request
    EXECUTOR_LOST = "executor_lost"  # the run's stream died and the template is not retryable
    NO_EXECUTOR = "no_executor"  # no executor would take it in time
    INTERNAL = "internal"


_ALLOWED: dict[AgentState, frozenset[AgentState]] = {
    AgentState.PENDING: frozenset({AgentState.RUNNING, AgentState.FAILED, AgentState.CANCELLED, AgentState.TIMED_OUT}),
    AgentState.RUNNING: frozenset(
        {AgentState.PENDING, AgentState.SUCCEEDED, AgentState.FAILED, AgentState.CANCELLED, AgentState.TIMED_OUT}
    ),
}


class InvalidTransition(FailedPrecondition):
    """A transition the lifecycle does not allow (a bug in the caller, or a race the caller lost)."""


def check_transition(src: AgentState, dst: AgentState) -> None:
    if src.terminal:
        raise InvalidTransition(f"agent is {src.name}, a terminal state, and cannot become {dst.name}")
    if dst not in _ALLOWED[src]:
        raise InvalidTransition(f"an agent cannot go from {src.name} to {dst.name}")


@dataclass(frozen=True)
class TemplateInfo:
    """What the scheduler needs from a resolved template, captured at creation. Published versions
    are immutable, so these never go stale for the agent that captured them."""

    name: str
    version: str
    retryable: bool
    timeout_ms: int


@dataclass(frozen=True)
class CreateSpec:
    """A client's request for an agent (CreateAgent and RunAgent share it)."""

    template_name: str
    template_version: str = ""
    input: bytes = b""
    labels: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""


@dataclass(frozen=True)
class Agent:
    id: str
    template_name: str
    template_version: str
    requested_version: str  # what the client asked for ("" = latest); idempotency compares this
    input: bytes
    labels: Mapping[str, str]
    retryable: bool
    timeout_ms: int
    create_time: float  # seconds since the epoch
    request_id: str = ""
    state: AgentState = AgentState.PENDING
    reason: str = ""
    cause: str = ""
    # The status a RunAgent call ends with for this agent ("OK", "RESOURCE_EXHAUSTED", ...): journaled
    # so that a repeated RunAgent on a finished agent ends the same way.
    status: str = ""
    output: bytes = b""
    output_truncated: bool = False
    exit_code: int = 0
    fuel_used: int = 0
    attempts: int = 0
    executor: str = ""
    # True from just before an executor is called until the agent is terminal or requeued. After a
    # crash, an agent with in_flight set may have run, so it is treated as a lost run, not as new.
    in_flight: bool = False
    deadline: float | None = None  # the RunAgent caller's deadline, seconds since the epoch
    start_time: float | None = None
    finish_time: float | None = None
    seq: int = 0  # journal order (newest first in listings); 0 until journaled
    # The journal's take-over counter for this agent (PostgreSQL mode): a write naming an older fence
    # than the row's is refused, so a replica that lost the agent cannot finish it. 0 in SQLite mode.
    fence: int = 0

    @property
    def ref(self) -> str:
        return f"{self.template_name}@{self.template_version}"


@dataclass(frozen=True)
class Outcome:
    """How an agent ends: its terminal state, why, and what a RunAgent call reports."""

    state: AgentState
    reason: str
    cause: Cause
    status: str = "OK"
    exit_code: int = 0
    fuel_used: int = 0
    executor: str = ""  # set when the ending names an executor the agent never ran on (a refusal)


# --- validation ------------------------------------------------------------------------------------


def validate_labels(labels: Mapping[str, str], field_name: str = "labels") -> None:
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(f"{field_name} has {len(labels)} entries; at most {MAX_LABELS}", field=field_name)
    for key, value in labels.items():
        if not LABEL_KEY_RE.fullmatch(key):
            raise InvalidArgument(
                f"label key {quote(key)} must be 1-63 letters, digits, '.', '_', '/' or '-' "
                "and start with a letter or digit",
                field=f"{field_name}.{key}",
            )
        if len(value) > MAX_LABEL_VALUE or "," in value:
            raise InvalidArgument(
                f"label {quote(key)} must be at most {MAX_LABEL_VALUE} characters without commas",
                field=f"{field_name}.{key}",
            )


def validate_spec(spec: CreateSpec) -> None:
    if not spec.template_name:
        raise InvalidArgument("template_name is required", field="template_name")
    if not NAME_RE.fullmatch(spec.template_name):
        raise InvalidArgument(
            f"template_name {quote(spec.template_name)} must be lower-case letters, digits and dashes",
            field="template_name",
        )
    if spec.template_version:
        try:
            Version(spec.template_version)
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message, field="template_version") from exc
    if len(spec.input) > MAX_INPUT_BYTES:
        raise InvalidArgument(f"input is {len(spec.input)} bytes; at most {MAX_INPUT_BYTES}", field="input")
    validate_labels(spec.labels)
    if spec.request_id and (len(spec.request_id) > MAX_REQUEST_ID or not _REQUEST_ID_RE.fullmatch(spec.request_id)):
        raise InvalidArgument(
            f"request_id must be at most {MAX_REQUEST_ID} printable ASCII characters without spaces",
            field="request_id",
        )


def idempotency_conflict(existing: Agent, spec: CreateSpec) -> str | None:
    """Name the first parameter that differs between a repeated request_id and the agent it created."""
    if existing.template_name != spec.template_name:
        return f"template_name ({quote(existing.template_name)} before, {quote(spec.template_name)} now)"
    if existing.requested_version != spec.template_version:
        return f"template_version ({quote(existing.requested_version)} before, {quote(spec.template_version)} now)"
    if existing.input != spec.input:
        return f"input ({len(existing.input)} bytes before, {len(spec.input)} different bytes now)"
    if dict(existing.labels) != dict(spec.labels):
        return f"labels ({quote(dict(existing.labels))} before, {quote(dict(spec.labels))} now)"
    return None


# --- transitions -----------------------------------------------------------------------------------


def new_agent(
    agent_id: str, spec: CreateSpec, template: TemplateInfo, now: float, deadline: float | None = None
) -> Agent:
    return Agent(
        id=agent_id,
        request_id=spec.request_id,
        template_name=template.name,
        template_version=template.version,
        requested_version=spec.template_version,
        input=spec.input,
        labels=dict(spec.labels),
        retryable=template.retryable,
        timeout_ms=template.timeout_ms,
        create_time=now,
        deadline=deadline,
    )


def mark_dispatching(agent: Agent) -> Agent:
    """The executor is about to be called: from now on a crash means the run may have happened."""
    if agent.state is not AgentState.PENDING:
        raise InvalidTransition(f"only a PENDING agent can be dispatched; this one is {agent.state.name}")
    return dataclasses.replace(agent, in_flight=True)


def mark_running(agent: Agent, executor: str, now: float) -> Agent:
    check_transition(agent.state, AgentState.RUNNING)
    return dataclasses.replace(
        agent,
        state=AgentState.RUNNING,
        executor=executor,
        attempts=agent.attempts + 1,
        start_time=now,
        in_flight=True,
        output=b"",
        output_truncated=False,
    )


def requeue(agent: Agent, reason: str) -> Agent:
    """A lost run of a retryable template goes back to PENDING (counted as an attempt if it had not
    been counted: a crash between the executor accepting and RUNNING being journaled)."""
    if agent.state is AgentState.PENDING:
        if not agent.in_flight:
            raise InvalidTransition("a PENDING agent that was not being dispatched has no run to requeue")
        attempts = agent.attempts + 1
    else:
        check_transition(agent.state, AgentState.PENDING)
        attempts = agent.attempts
    return dataclasses.replace(
        agent, state=AgentState.PENDING, reason=reason, in_flight=False, attempts=attempts, output=b"",
        output_truncated=False,
    )  # fmt: skip


def redispatch(agent: Agent, reason: str) -> Agent:
    """Requeue a lost run and dispatch it again at once (one journal write instead of two)."""
    return mark_dispatching(requeue(agent, reason))


def finish(agent: Agent, outcome: Outcome, now: float, output: bytes | None = None, truncated: bool = False) -> Agent:
    check_transition(agent.state, outcome.state)
    if not outcome.reason:
        raise ValueError("every terminal state carries a reason")
    return dataclasses.replace(
        agent,
        state=outcome.state,
        reason=outcome.reason,
        cause=str(outcome.cause),
        status=outcome.status,
        exit_code=outcome.exit_code,
        fuel_used=outcome.fuel_used,
        executor=agent.executor or outcome.executor,
        output=agent.output if output is None else output,
        output_truncated=agent.output_truncated if output is None else truncated,
        in_flight=False,
        finish_time=now,
    )


def can_retry_lost_run(agent: Agent, max_attempts: int) -> bool:
    """A lost run is retried when the template allows it and the attempt bound is not reached.
    A PENDING in-flight agent's lost run has not been counted yet, hence the +1."""
    counted = agent.attempts + (1 if agent.state is AgentState.PENDING else 0)
    return agent.retryable and counted < max_attempts


def lost_run_outcome(agent: Agent, what: str, max_attempts: int) -> Outcome:
    """The terminal outcome of a lost run that will not be retried."""
    if agent.retryable:
        reason = f"executor lost during run ({what}); gave up after {max_attempts} attempts"
    else:
        reason = f"executor lost during run ({what}); template is not retryable"
    return Outcome(AgentState.FAILED, reason, Cause.EXECUTOR_LOST, status="UNAVAILABLE")


# --- executor run endings -------------------------------------------------------------------------


class RunOutcome(enum.IntEnum):
    """As the executor contract numbers them."""

    SUCCEEDED = 1
    FAILED = 2
    TIMED_OUT = 3
    RESOURCE_EXHAUSTED = 4
    CANCELLED = 5


@dataclass(frozen=True)
class RunFinished:
    outcome: RunOutcome
    exit_code: int = 0
    trap: str = ""
    reason: str = ""
    fuel_used: int = 0


@dataclass(frozen=True)
class Refused:
    """The executor did not take the run (full, unreachable): try another one."""

    code: str
    message: str
    executor: str = ""  # who refused: an executor id, or the address called when it did not say


@dataclass(frozen=True)
class Lost:
    """The run's stream broke after it started: the run may or may not have happened."""

    what: str


# Codes that, before any event, mean "this executor can't take it now" rather than "this run is bad".
_RETRY_ELSEWHERE = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE", "CANCELLED", "ABORTED"})


def _finished_outcome(fin: RunFinished, code: str, message: str) -> Outcome:
    reason = fin.reason or message
    if fin.outcome is RunOutcome.SUCCEEDED:
        return Outcome(AgentState.SUCCEEDED, reason or "exited with code 0", Cause.SUCCEEDED, "OK", fin.exit_code,
                       fin.fuel_used)  # fmt: skip
    if fin.outcome is RunOutcome.FAILED:
        if not reason:
            reason = f"trapped: {fin.trap}" if fin.trap else f"exited with code {fin.exit_code}"
        return Outcome(AgentState.FAILED, reason, Cause.AGENT_FAILED, "OK", fin.exit_code, fin.fuel_used)
    if fin.outcome is RunOutcome.TIMED_OUT:
        return Outcome(AgentState.TIMED_OUT, reason or "the run passed its wall-clock deadline", Cause.TIMED_OUT,
                       "DEADLINE_EXCEEDED", fin.exit_code, fin.fuel_used)  # fmt: skip
    if fin.outcome is RunOutcome.RESOURCE_EXHAUSTED:
        return Outcome(AgentState.FAILED, reason or "a run limit was exhausted", Cause.LIMIT, "RESOURCE_EXHAUSTED",
                       fin.exit_code, fin.fuel_used)  # fmt: skip
    return Outcome(AgentState.CANCELLED, reason or "the run was cancelled", Cause.CANCELLED, "CANCELLED",
                   fin.exit_code, fin.fuel_used)  # fmt: skip


def classify_run(
    *,
    executor: str,
    saw_events: bool,
    finished: RunFinished | None,
    code: str,
    message: str,
    cancel_reason: str | None,
    caller_deadline: bool,
) -> Outcome | Refused | Lost:
    """Turn how an executor call ended into what happens to the agent.

    `code`/`message` are the call's final status; `cancel_reason` is set when the scheduler itself
    cancelled the call (CancelAgent); `caller_deadline` says the call's deadline was the client's.
    """
    if finished is not None:
        if code == "CANCELLED" and cancel_reason:
            return Outcome(AgentState.CANCELLED, cancel_reason, Cause.CANCELLED, "CANCELLED", finished.exit_code,
                           finished.fuel_used)  # fmt: skip
        return _finished_outcome(finished, code, message)
    if cancel_reason is not None:
        return Outcome(AgentState.CANCELLED, cancel_reason, Cause.CANCELLED, "CANCELLED")
    if code == "DEADLINE_EXCEEDED":
        if caller_deadline:
            reason = "the caller's deadline passed " + ("while the agent was running" if saw_events else
                                                        "before the executor started the agent")  # fmt: skip
        else:
            reason = f"executor {executor} did not finish the run within its time budget"
        return Outcome(AgentState.TIMED_OUT, reason, Cause.TIMED_OUT, "DEADLINE_EXCEEDED")
    if not saw_events:
        if code in _RETRY_ELSEWHERE or code == "OK":
            return Refused(code, message or "the stream ended without any event", executor)
        return Outcome(AgentState.FAILED, f"executor {executor} refused the run: {message or code}", Cause.REJECTED,
                       code, executor=executor)  # fmt: skip
    if code == "OK":
        return Lost(f"executor {executor} ended the stream without a RunFinished event")
    if code in ("UNAVAILABLE", "CANCELLED", "INTERNAL", "UNKNOWN", "ABORTED"):
        return Lost(f"executor {executor} stream broke: {code}: {message}")
    if code == "RESOURCE_EXHAUSTED":
        return Outcome(AgentState.FAILED, message or "a run limit was exhausted", Cause.LIMIT, code)
    return Outcome(AgentState.FAILED, f"executor {executor} failed the run: {message or code}", Cause.REJECTED, code,
                   executor=executor)  # fmt: skip


# --- listing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListFilter:
    state: AgentState | None = None
    template_name: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    # Creation time window in µs since the epoch: created_after_us <= create_us < created_before_us.
    created_after_us: int | None = None
    created_before_us: int | None = None

    def matches(self, agent: Agent) -> bool:
        created = round(agent.create_time * 1_000_000)
        return (
            (self.state is None or agent.state is self.state)
            and (not self.template_name or agent.template_name == self.template_name)
            and all(agent.labels.get(k) == v for k, v in self.labels)
            and (self.created_after_us is None or created >= self.created_after_us)
            and (self.created_before_us is None or created < self.created_before_us)
        )

    def fingerprint(self) -> str:
        parts: list[object] = [self.state or 0, self.template_name, list(self.labels)]
        if self.created_after_us is not None or self.created_before_us is not None:
            parts += [self.created_after_us, self.created_before_us]  # tokens issued before stay valid
        raw = json.dumps(parts).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


def parse_label_selector(selector: str) -> tuple[tuple[str, str], ...]:
    """'k=v,k2=v2' → ((k, v), (k2, v2)); every pair must match. The grammar is every List RPC's
    (common/listing.py); a key no agent label could have is refused here."""
    return listing.parse_label_selector(selector, LABEL_KEY_RE)


def page_size(requested: int) -> int:
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


@dataclass(frozen=True, order=True)
class PageCursor:
    """Where a listing continues: after this agent, newest first by creation time (µs), then id.
    Every color's journal understands it, so pages from several schedulers merge."""

    create_us: int
    agent_id: str

    @classmethod
    def of(cls, create_time: float, agent_id: str) -> PageCursor:
        return cls(round(create_time * 1_000_000), agent_id)


def encode_page_token(after: PageCursor, flt: ListFilter) -> str:
    return listing.encode_page_token({"t": after.create_us, "i": after.agent_id}, flt.fingerprint())


def decode_page_token(token: str, flt: ListFilter) -> PageCursor | None:
    """Where to continue, or None for the first page. A token from another filter is refused:
    following it would silently skip or repeat agents."""
    if not token:
        return None
    position = listing.decode_page_token(token, flt.fingerprint())
    create_us, agent_id = position.get("t"), position.get("i")
    if not isinstance(create_us, int) or isinstance(create_us, bool) or create_us < 0 or not isinstance(agent_id, str):
        raise listing.not_issued()
    return PageCursor(create_us, agent_id)


# Timestamps a listing accepts: 0001-01-01 .. 9999-12-31, the range google.protobuf.Timestamp allows.
_MIN_UNIX, _MAX_UNIX = -62_135_596_800, 253_402_300_799


@dataclass(frozen=True)
class ListQuery:
    """A checked ListAgents: which agents, after which one, how many; with a request_id, the one agent
    of that idempotency key (if it matches the filter too) and no pages."""

    flt: ListFilter = field(default_factory=ListFilter)
    after: PageCursor | None = None
    size: int = DEFAULT_PAGE_SIZE
    request_id: str = ""


@dataclass(frozen=True)
class Page:
    """One page of a listing, newest first; `next_page_token` is empty on the last page."""

    agents: Sequence[Agent]
    next_page_token: str = ""


def _instant_us(unix: float | None, name: str) -> int | None:
    if unix is None:
        return None
    if not _MIN_UNIX <= unix <= _MAX_UNIX:
        raise InvalidArgument(f"{name} is outside the years 1-9999", field=name)
    return round(unix * 1_000_000)


def list_query(
    state: int,
    template_name: str,
    label_selector: str,
    requested_size: int,
    page_token: str,
    request_id: str = "",
    created_after: float | None = None,
    created_before: float | None = None,
) -> ListQuery:
    """A client's listing, checked: INVALID_ARGUMENT for an unknown state, a bad selector, an instant
    outside the years 1-9999, or a page token issued for another filter (a request_id listing has no
    pages, so its token is not read)."""
    if state and state not in AgentState._value2member_map_:
        raise InvalidArgument(f"state {state} is not an AgentState", field="state")
    flt = ListFilter(
        state=AgentState(state) if state else None,
        template_name=template_name,
        labels=parse_label_selector(label_selector),
        created_after_us=_instant_us(created_after, "created_after"),
        created_before_us=_instant_us(created_before, "created_before"),
    )
    if request_id:
        return ListQuery(flt, None, page_size(requested_size), request_id)
    return ListQuery(flt, decode_page_token(page_token, flt), page_size(requested_size))
