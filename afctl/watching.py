"""What `afctl agents watch` prints of an agent's output, from the events of a WatchAgent stream.

The stream's contract (services/scheduler/README.md): the first event is the agent now, with its output
so far; output events then carry what it writes next; every later agent event carries its whole
(capped) output again. A watcher that arrives after the agent wrote, or after it ended, or on a replica
that follows the agent through the shared journal, gets its output only inside agent events, so
printing output events alone prints nothing for them. Agent events are therefore the reference, and
output events print what is new in between.

Two cases make an agent's output disagree with what was printed: a run lost with its executor starts
over (the agent goes back to PENDING with no output), and a slow watcher is told that output events
were dropped. Both are said on stderr, once each time, never silently glued together.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Printable:
    """What to write for one event: bytes for stdout, and a notice for stderr (empty when none)."""

    data: bytes = b""
    notice: str = ""


@dataclass
class WatchedOutput:
    """The output printed so far for one watched agent, and what each further event adds to it."""

    printed: bytearray = field(default_factory=bytearray)

    def on_output(self, data: bytes) -> Printable:
        self.printed += data
        return Printable(data)

    def on_agent(self, output: bytes, terminal: bool) -> Printable:
        """The agent's whole output as of this event (``terminal``: the agent has ended)."""
        if output.startswith(self.printed):
            new = output[len(self.printed) :]
            self.printed += new
            return Printable(new)
        if not output and not terminal:
            self.printed.clear()
            return Printable(notice="the run starts over (its executor was lost): its output starts again")
        # Output events were dropped while this watcher was behind: the agent's own copy is the truth.
        self.printed[:] = output
        return Printable(output, notice="some output was missed while watching; the agent's whole output follows")
