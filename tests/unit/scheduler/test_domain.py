"""The lifecycle rules, run classification, validation and paging tokens: pure functions."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.scheduler import domain
from services.scheduler.domain import (
    AgentState,
    Cause,
    CreateSpec,
    InvalidTransition,
    ListFilter,
    Lost,
    Outcome,
    Refused,
    RunFinished,
    RunOutcome,
    TemplateInfo,
)

TEMPLATE = TemplateInfo("echo", "1.0.0", retryable=False, timeout_ms=1000)
S = AgentState


def make(retryable: bool = False, **spec: object) -> domain.Agent:
    info = TemplateInfo("echo", "1.0.0", retryable=retryable, timeout_ms=1000)
    return domain.new_agent("a1", CreateSpec("echo", **spec), info, now=100.0)  # type: ignore[arg-type]


# --- the state machine -----------------------------------------------------------------------------

ALLOWED = {
    (S.PENDING, S.RUNNING), (S.PENDING, S.FAILED), (S.PENDING, S.CANCELLED), (S.PENDING, S.TIMED_OUT),
    (S.RUNNING, S.PENDING), (S.RUNNING, S.SUCCEEDED), (S.RUNNING, S.FAILED), (S.RUNNING, S.CANCELLED),
    (S.RUNNING, S.TIMED_OUT),
}  # fmt: skip


@pytest.mark.parametrize("src", list(S))
@pytest.mark.parametrize("dst", list(S))
def test_transition_table(src: AgentState, dst: AgentState) -> None:
    if (src, dst) in ALLOWED:
        domain.check_transition(src, dst)
    else:
        with pytest.raises(InvalidTransition):
            domain.check_transition(src, dst)


def test_terminal_states_never_change() -> None:
    agent = make()
    running = domain.mark_running(domain.mark_dispatching(agent), "ex-1", 101.0)
    done = domain.finish(running, Outcome(S.SUCCEEDED, "exited with code 0", Cause.SUCCEEDED), 102.0, b"hi")
    for outcome_state in (S.FAILED, S.CANCELLED, S.SUCCEEDED):
        with pytest.raises(InvalidTransition, match="terminal"):
            domain.finish(done, Outcome(outcome_state, "again", Cause.INTERNAL), 103.0)
    with pytest.raises(InvalidTransition):
        domain.mark_running(done, "ex-2", 104.0)
    with pytest.raises(InvalidTransition):
        domain.requeue(done, "lost")


def test_pending_cannot_succeed_without_running() -> None:
    with pytest.raises(InvalidTransition, match="PENDING to SUCCEEDED"):
        domain.finish(make(), Outcome(S.SUCCEEDED, "ok", Cause.SUCCEEDED), 1.0)


def test_every_terminal_state_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="reason"):
        domain.finish(make(), Outcome(S.CANCELLED, "", Cause.CANCELLED), 1.0)


def test_running_counts_attempts_and_records_executor_and_times() -> None:
    agent = domain.mark_running(domain.mark_dispatching(make()), "ex-7", 101.0)
    assert (agent.state, agent.attempts, agent.executor, agent.start_time, agent.in_flight) == (
        S.RUNNING, 1, "ex-7", 101.0, True,
    )  # fmt: skip
    done = domain.finish(agent, Outcome(S.FAILED, "exited with code 3", Cause.AGENT_FAILED, exit_code=3), 105.0,
                         b"out", True)  # fmt: skip
    assert (done.finish_time, done.exit_code, done.output, done.output_truncated, done.in_flight) == (
        105.0, 3, b"out", True, False,
    )  # fmt: skip


def test_requeue_counts_an_uncounted_lost_dispatch() -> None:
    dispatching = domain.mark_dispatching(make(retryable=True))
    requeued = domain.requeue(dispatching, "lost")
    assert (requeued.state, requeued.attempts, requeued.in_flight) == (S.PENDING, 1, False)
    with pytest.raises(InvalidTransition):
        domain.requeue(make(), "a pending agent that was never dispatched has no run to lose")


@pytest.mark.parametrize(
    ("retryable", "attempts", "state", "expected"),
    [
        (False, 1, S.RUNNING, False),
        (True, 1, S.RUNNING, True),
        (True, 2, S.RUNNING, True),
        (True, 3, S.RUNNING, False),  # bound 3 reached
        (True, 2, S.PENDING, False),  # in-flight PENDING: this lost dispatch is the 3rd attempt
        (True, 1, S.PENDING, True),
    ],
)
def test_retry_bound(retryable: bool, attempts: int, state: AgentState, expected: bool) -> None:
    agent = domain.Agent(**{**make(retryable=retryable).__dict__, "attempts": attempts, "state": state})
    assert domain.can_retry_lost_run(agent, 3) is expected


def test_lost_run_reason_names_retryability() -> None:
    outcome = domain.lost_run_outcome(make(), "scheduler restarted", 3)
    assert outcome.reason == "executor lost during run (scheduler restarted); template is not retryable"
    assert (outcome.state, outcome.cause, outcome.status) == (S.FAILED, Cause.EXECUTOR_LOST, "UNAVAILABLE")
    assert "gave up after 3 attempts" in domain.lost_run_outcome(make(retryable=True), "x", 3).reason


# --- how an executor call's ending becomes an agent outcome -----------------------------------------


def classify(**kw: object) -> object:
    args: dict[str, object] = {
        "executor": "ex", "saw_events": True, "finished": None, "code": "OK", "message": "", "cancel_reason": None,
        "caller_deadline": False,
    }  # fmt: skip
    args.update(kw)
    return domain.classify_run(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("run_outcome", "code", "state", "status"),
    [
        (RunOutcome.SUCCEEDED, "OK", S.SUCCEEDED, "OK"),
        (RunOutcome.FAILED, "OK", S.FAILED, "OK"),
        (RunOutcome.RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED", S.FAILED, "RESOURCE_EXHAUSTED"),
        (RunOutcome.TIMED_OUT, "DEADLINE_EXCEEDED", S.TIMED_OUT, "DEADLINE_EXCEEDED"),
        (RunOutcome.CANCELLED, "CANCELLED", S.CANCELLED, "CANCELLED"),
    ],
)
def test_finished_runs_mirror_the_executor(run_outcome: RunOutcome, code: str, state: AgentState, status: str) -> None:
    result = classify(finished=RunFinished(run_outcome, exit_code=2, fuel_used=99, reason="why"), code=code)
    assert isinstance(result, Outcome)
    assert (result.state, result.status, result.reason, result.fuel_used) == (state, status, "why", 99)


def test_failed_run_without_reason_names_the_trap_or_exit_code() -> None:
    trapped = classify(finished=RunFinished(RunOutcome.FAILED, trap="unreachable"))
    exited = classify(finished=RunFinished(RunOutcome.FAILED, exit_code=4))
    assert trapped.reason == "trapped: unreachable"  # type: ignore[union-attr]
    assert exited.reason == "exited with code 4"  # type: ignore[union-attr]


@pytest.mark.parametrize("code", ["RESOURCE_EXHAUSTED", "UNAVAILABLE"])
def test_refusal_before_any_event_means_try_another_executor(code: str) -> None:
    assert isinstance(classify(saw_events=False, code=code, message="full"), Refused)


@pytest.mark.parametrize("code", ["FAILED_PRECONDITION", "NOT_FOUND", "INVALID_ARGUMENT", "PERMISSION_DENIED"])
def test_rejection_before_any_event_fails_the_agent_with_the_same_status(code: str) -> None:
    result = classify(saw_events=False, code=code, message="signature does not verify")
    assert isinstance(result, Outcome)
    assert (result.state, result.status, result.cause) == (S.FAILED, code, Cause.REJECTED)
    assert "signature does not verify" in result.reason


@pytest.mark.parametrize(("code", "message"), [("OK", ""), ("UNAVAILABLE", "reset"), ("INTERNAL", "boom")])
def test_broken_stream_after_events_is_a_lost_run(code: str, message: str) -> None:
    assert isinstance(classify(code=code, message=message), Lost)


def test_our_cancellation_wins_over_the_broken_stream() -> None:
    result = classify(code="CANCELLED", cancel_reason="cancelled by CancelAgent")
    assert isinstance(result, Outcome)
    assert (result.state, result.reason, result.status) == (S.CANCELLED, "cancelled by CancelAgent", "CANCELLED")


def test_deadline_names_whose_deadline_it_was() -> None:
    caller = classify(code="DEADLINE_EXCEEDED", caller_deadline=True)
    own = classify(code="DEADLINE_EXCEEDED", saw_events=False)
    assert caller.state is S.TIMED_OUT and "caller's deadline" in caller.reason  # type: ignore[union-attr]
    assert own.state is S.TIMED_OUT and "time budget" in own.reason  # type: ignore[union-attr]


# --- validation, idempotency, listing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (CreateSpec(""), "template_name"),
        (CreateSpec("Bad_Name"), "template_name"),
        (CreateSpec("echo", template_version="latest"), "template_version"),
        (CreateSpec("echo", input=b"x" * (domain.MAX_INPUT_BYTES + 1)), "input"),
        (CreateSpec("echo", labels={"bad key": "v"}), "labels.bad key"),
        (CreateSpec("echo", labels={"k": "a,b"}), "labels.k"),
        (CreateSpec("echo", labels={f"k{i}": "v" for i in range(65)}), "labels"),
        (CreateSpec("echo", request_id="has space"), "request_id"),
        (CreateSpec("echo", request_id="x" * 129), "request_id"),
    ],
)
def test_validation_names_the_field(spec: CreateSpec, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        domain.validate_spec(spec)
    assert err.value.field == field


def test_idempotency_conflict_names_the_differing_parameter() -> None:
    agent = make(input=b"in", labels={"team": "a"}, request_id="r1")
    assert domain.idempotency_conflict(agent, CreateSpec("echo", input=b"in", labels={"team": "a"})) is None
    assert "template_name" in domain.idempotency_conflict(agent, CreateSpec("other", input=b"in", labels={"team": "a"}))
    assert "template_version" in domain.idempotency_conflict(
        agent, CreateSpec("echo", "1.0.0", input=b"in", labels={"team": "a"})
    )
    assert "input" in domain.idempotency_conflict(agent, CreateSpec("echo", input=b"IN", labels={"team": "a"}))
    assert "labels" in domain.idempotency_conflict(agent, CreateSpec("echo", input=b"in", labels={"team": "b"}))


def test_label_selector() -> None:
    assert domain.parse_label_selector("") == ()
    assert domain.parse_label_selector(" team = a , env==prod") == (("env", "prod"), ("team", "a"))
    for bad in ("team", "=a", "team=a,team=b"):
        with pytest.raises(InvalidArgument) as err:
            domain.parse_label_selector(bad)
        assert err.value.field == "label_selector"


def test_page_tokens_round_trip_and_are_bound_to_their_filter() -> None:
    flt = ListFilter(state=S.PENDING, template_name="echo")
    cursor = domain.PageCursor.of(1_700_000_000.123456, "agent-1")
    assert cursor == domain.PageCursor(1_700_000_000_123_456, "agent-1")
    token = domain.encode_page_token(cursor, flt)
    assert domain.decode_page_token(token, flt) == cursor
    assert domain.decode_page_token("", flt) is None
    for bad_token, bad_filter in ((token, ListFilter()), ("garbage!", flt), ("e30", flt)):
        with pytest.raises(InvalidArgument) as err:
            domain.decode_page_token(bad_token, bad_filter)
        assert err.value.field == "page_token"


def test_page_size_defaults_and_caps() -> None:
    assert (domain.page_size(0), domain.page_size(7), domain.page_size(10_000)) == (50, 7, 500)
