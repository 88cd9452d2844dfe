"""What `afctl agents watch` prints of an agent's output, for every way a watcher meets a WatchAgent
stream: from the start, after the agent wrote, after it ended, through the journal of another
replica, across a run that starts over, and behind (output events dropped)."""

from __future__ import annotations

from afctl.watching import TERMINAL_STATES, Printable, WatchedOutput
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb


def printed(events: list[tuple[str, bytes, bool]]) -> tuple[bytes, list[str]]:
    """stdout and stderr notices for a stream of ("agent", whole output, terminal) / ("output", data, _)."""
    watched, out, notices = WatchedOutput(), bytearray(), []
    for kind, data, terminal in events:
        got: Printable = watched.on_agent(data, terminal) if kind == "agent" else watched.on_output(data)
        out += got.data
        if got.notice:
            notices.append(got.notice)
    return bytes(out), notices


def test_a_watch_from_the_start_prints_each_output_event_once() -> None:
    events = [("agent", b"", False), ("output", b"hel", False), ("output", b"lo\n", False), ("agent", b"hello\n", True)]
    assert printed(events) == (b"hello\n", [])


def test_a_watch_of_a_finished_agent_prints_its_output() -> None:
    # The watch that found the agent already SUCCEEDED: one agent event, no output events.
    assert printed([("agent", b'{"primes": 148933}', True)]) == (b'{"primes": 148933}', [])


def test_a_watch_that_joins_mid_run_prints_the_output_so_far_then_the_rest() -> None:
    events = [("agent", b"first ", False), ("output", b"second", False), ("agent", b"first second", True)]
    assert printed(events) == (b"first second", [])


def test_a_watch_through_the_journal_gets_the_output_with_the_ending() -> None:
    # Another replica runs it: journaled states carry no output until the terminal one.
    events = [("agent", b"", False), ("agent", b"", False), ("agent", b"DONE", True)]
    assert printed(events) == (b"DONE", [])


def test_a_run_that_starts_over_is_said_and_its_output_is_not_glued_on() -> None:
    events = [
        ("agent", b"", False),
        ("output", b"attempt one", False),
        ("agent", b"", False),  # back to PENDING: the executor was lost
        ("output", b"attempt two", False),
        ("agent", b"attempt two", True),
    ]
    out, notices = printed(events)
    assert out == b"attempt oneattempt two" and len(notices) == 1 and "starts over" in notices[0]


def test_dropped_output_events_are_said_and_the_whole_output_follows() -> None:
    events = [("agent", b"", False), ("output", b"aaa", False), ("agent", b"aaabbbccc", True)]
    assert printed(events) == (b"aaabbbccc", [])  # what was printed is a prefix: only the rest is added
    behind = [("agent", b"", False), ("output", b"aaa", False), ("output", b"ccc", False)]  # "bbb" was dropped
    events = [*behind, ("agent", b"aaabbbccc", True)]
    out, notices = printed(events)
    assert out == b"aaacccaaabbbccc" and len(notices) == 1 and "missed" in notices[0]


def test_an_agent_that_wrote_nothing_prints_nothing() -> None:
    assert printed([("agent", b"", False), ("agent", b"", True)]) == (b"", [])


def test_output_past_the_cap_is_printed_once() -> None:
    # The scheduler keeps 5 bytes (output_truncated); the output events carried all 8, and were printed.
    watched = WatchedOutput()
    got = [watched.on_agent(b"", False), watched.on_output(b"aaaa"), watched.on_output(b"bbbb")]
    got.append(watched.on_agent(b"aaaab", True, truncated=True))
    assert b"".join(p.data for p in got) == b"aaaabbbb" and not any(p.notice for p in got)


def test_a_watch_that_joins_past_the_cap_says_the_output_so_far_is_cut() -> None:
    watched = WatchedOutput()
    got = [watched.on_agent(b"aaaab", False, truncated=True), watched.on_output(b"zz")]
    got.append(watched.on_agent(b"aaaab", True, truncated=True))
    assert b"".join(p.data for p in got) == b"aaaabzz"
    notices = [p.notice for p in got if p.notice]
    assert len(notices) == 1 and "cut at 5 bytes" in notices[0]


def test_a_watch_of_an_agent_that_ended_past_the_cap_says_its_output_is_cut() -> None:
    got = WatchedOutput().on_agent(b"aaaab", True, truncated=True)
    assert got.data == b"aaaab" and "cut at 5 bytes" in got.notice


def test_every_ending_state_is_terminal_and_only_those() -> None:
    # TIMED_OUT was missing from afctl's own list once: a timed-out agent's output came after its state line.
    assert {
        sch_pb.AGENT_STATE_SUCCEEDED,
        sch_pb.AGENT_STATE_FAILED,
        sch_pb.AGENT_STATE_CANCELLED,
        sch_pb.AGENT_STATE_TIMED_OUT,
    } == TERMINAL_STATES


def test_events_read_as_a_run_to_end_reads_them_keep_the_last_attempt() -> None:
    def agent(state: int, output: bytes = b"") -> sch_pb.RunAgentResponse:
        return sch_pb.RunAgentResponse(agent=sch_pb.Agent(state=state, output=output))

    def out(data: bytes) -> sch_pb.RunAgentResponse:
        return sch_pb.RunAgentResponse(output=sch_pb.AgentOutput(data=data))

    watched = WatchedOutput()
    for event in [
        agent(sch_pb.AGENT_STATE_PENDING),
        agent(sch_pb.AGENT_STATE_RUNNING),
        out(b"lost "),
        agent(sch_pb.AGENT_STATE_PENDING),  # the executor was lost: the run starts over
        agent(sch_pb.AGENT_STATE_RUNNING),
        out(b"second"),
        sch_pb.RunAgentResponse(log=sch_pb.AgentLog(level="info", message="a log line adds no output")),
        agent(sch_pb.AGENT_STATE_TIMED_OUT, b"second"),
    ]:
        watched.on_event(event)
    assert bytes(watched.printed) == b"second"
