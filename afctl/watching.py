"""What `afctl agents watch` prints of an agent's output, from the events of a WatchAgent stream.

The stream's contract (services/scheduler/README.md): the first event is the agent now, with its output
so far; output events then carry what it writes next; every later agent event carries its whole
(capped) output again. A watcher that arrives after the agent wrote, or after it ended, or on a replica
that follows the agent through the shared journal, gets its output only inside agent events, so
printing output events alone prints nothing for them. Agent events are therefore the reference, and
output events print what is new in between.

The agent keeps its output only up to the scheduler's cap (AF_OUTPUT_CAP_BYTES, `output_truncated` set
past it), while output events carry all of it: an agent event whose (cut) output is a prefix of what was
printed adds nothing. Output that only the cut copy could have given (a watch that arrives after the agent
passed the cap) is said to be cut.

Two cases make an agent's output disagree with what was printed: a run lost with its executor starts
over (the agent goes back to PENDING with no output), and a slow watcher is told that output events
were dropped. Both are said on stderr, once each time, never silently glued together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb

# Every state an agent does not leave: all but PENDING and RUNNING (and the never-stored zero value), so a
# state the contract adds later counts as an ending rather than being waited on forever.
TERMINAL_STATES = frozenset(
    v
    for v in sch_pb.AgentState.values()
    if v not in (sch_pb.AGENT_STATE_UNSPECIFIED, sch_pb.AGENT_STATE_PENDING, sch_pb.AGENT_STATE_RUNNING)
)


@dataclass(frozen=True)
class Printable:
    """What to write for one event: bytes for stdout, and a notice for stderr (empty when none).
    `restart`: what was written before does not continue into `data` (a byte sequence cut there ends)."""

    data: bytes = b""
    notice: str = ""
    restart: bool = False


@dataclass
class WatchedOutput:
    """The output printed so far for one watched agent, and what each further event adds to it."""

    printed: bytearray = field(default_factory=bytearray)
    # Bytes printed from a cut copy (the agent's output at the cap): the stream's next bytes do not follow.
    cut_said: bool = False

    def on_event(self, event: sch_pb.WatchAgentResponse | sch_pb.RunAgentResponse) -> Printable:
        """What one WatchAgent or RunAgent event adds (nothing for a log line)."""
        kind = event.WhichOneof("event")
        if kind == "agent":
            agent = event.agent
            return self.on_agent(agent.output, agent.state in TERMINAL_STATES, agent.output_truncated)
        if kind == "output":
            return self.on_output(event.output.data)
        return Printable()

    def on_output(self, data: bytes) -> Printable:
        self.printed += data
        return Printable(data)

    def on_agent(self, output: bytes, terminal: bool, truncated: bool = False) -> Printable:
        """The agent's whole output as of this event (``terminal``: the agent has ended; ``truncated``:
        ``output`` is cut at the scheduler's cap, the agent wrote more)."""
        if output.startswith(self.printed):
            new = output[len(self.printed) :]
            self.printed += new
            return Printable(new, self._cut_notice(len(output)) if truncated and new else "")
        if truncated and self.printed.startswith(output):
            # Everything the agent kept was printed, and more: the output events past the cap.
            return Printable()
        if not output and not terminal:
            self.printed.clear()
            self.cut_said = False
            return Printable(
                notice="the run starts over (its executor was lost): its output starts again", restart=True
            )
        # Output events were dropped while this watcher was behind: the agent's own copy is the truth.
        self.printed[:] = output
        notice = "some output was missed while watching; the agent's whole output follows"
        if truncated:
            notice += f" (cut at {len(output)} bytes, the scheduler keeps no more)"
            self.cut_said = True
        return Printable(output, notice=notice, restart=True)

    def _cut_notice(self, size: int) -> str:
        if self.cut_said:
            return ""
        self.cut_said = True
        return (
            f"the agent's output so far is cut at {size} bytes (the scheduler keeps no more): "
            "what it wrote past that before this watch began is not shown"
        )
