"""What `afctl agents watch` prints of an agent's output, for every way a watcher meets a WatchAgent
stream: from the start, after the agent wrote, after it ended, through the journal of another
replica, across a run that starts over, and behind (output events dropped)."""

from __future__ import annotations

from afctl.watching import Printable, WatchedOutput


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
