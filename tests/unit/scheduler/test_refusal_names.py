"""A refusal names the executor that refused (from the Run's trailers), not the scheduler's sidecar,
and the agent it failed records that executor."""

from __future__ import annotations

from services.scheduler import domain
from services.scheduler.domain import AgentState, CreateSpec, Outcome, Refused, TemplateInfo


def _classify(**kw: object) -> object:
    args: dict[str, object] = {
        "executor": "executor-green", "saw_events": False, "finished": None, "code": "OK", "message": "",
        "cancel_reason": None, "caller_deadline": False,
    }  # fmt: skip
    args.update(kw)
    return domain.classify_run(**args)  # type: ignore[arg-type]


def test_a_rejection_names_the_executor_in_the_reason_and_on_the_agent() -> None:
    outcome = _classify(code="FAILED_PRECONDITION", message="signature does not verify")
    assert isinstance(outcome, Outcome)
    assert outcome.reason.startswith("executor executor-green refused the run") and outcome.executor == "executor-green"
    agent = domain.new_agent("a1", CreateSpec("echo"), TemplateInfo("echo", "1.0.0", False, 1000), now=1.0)
    assert agent.executor == ""
    assert domain.finish(agent, outcome, now=2.0).executor == "executor-green"


def test_a_refusal_to_retry_elsewhere_keeps_who_refused() -> None:
    refused = _classify(code="RESOURCE_EXHAUSTED", message="pool full")
    assert isinstance(refused, Refused) and refused.executor == "executor-green"


def test_an_agent_that_ran_keeps_the_executor_it_ran_on() -> None:
    agent = domain.new_agent("a1", CreateSpec("echo"), TemplateInfo("echo", "1.0.0", False, 1000), now=1.0)
    running = domain.mark_running(domain.mark_dispatching(agent), "executor-blue", 2.0)
    outcome = _classify(saw_events=True, code="NOT_FOUND", message="gone")
    assert isinstance(outcome, Outcome) and running.state is AgentState.RUNNING
    assert domain.finish(running, outcome, now=3.0).executor == "executor-blue"
