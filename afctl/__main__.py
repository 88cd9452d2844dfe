"""afctl — publish templates, run agents, watch them, manage keys. `afctl --help` (installed into the venv by
`make setup`; `python -m afctl` is the same program)."""

from __future__ import annotations

import codecs
import contextlib
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from google.protobuf.timestamp_pb2 import Timestamp
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from afctl import audit, traces
from afctl.client import Client, Endpoints, Tls
from afctl.examples import catalogue
from afctl.failures import classify_rpc_error, file_error
from afctl.output import Format, OutputOption, console, emit, err, printable, styled
from afctl.watching import TERMINAL_STATES, Printable, WatchedOutput
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from agentfactory.signer.v1 import signer_service_pb2 as sig_pb

# pretty_exceptions off: main() turns every expected failure into one line and an exit code (afctl.failures).
app = typer.Typer(help="Agent Factory command line.", no_args_is_help=True, pretty_exceptions_enable=False)
templates_app = typer.Typer(help="Publish, list, inspect and verify templates.", no_args_is_help=True)
agents_app = typer.Typer(help="Create, inspect, watch and cancel agents.", no_args_is_help=True)
keys_app = typer.Typer(help="Signing keys: list, rotate, revoke.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")
app.add_typer(agents_app, name="agents")
app.add_typer(keys_app, name="keys")
# Local files of a run (var/), no connection needed.
app.add_typer(traces.app, name="traces")
app.command("audit")(audit.audit)

STATE: dict[str, Any] = {}  # endpoints, target and timeout, set once by the root callback
COLORS = ("blue", "green")  # the colors of a blue/green service (mesh/topology.yaml)


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("agentfactory")
        except metadata.PackageNotFoundError:
            version = "unknown (not installed: run make setup)"
        console.print(f"afctl {version}")
        raise typer.Exit()


def _color(value: str) -> str:
    if value and value not in COLORS:
        raise typer.BadParameter(f"must be one of {', '.join(COLORS)}")
    return value


@app.callback()
def connect(
    gateway: Annotated[str, typer.Option(envvar="AF_GATEWAY", help="gateway host:port (one address for all)")] = "",
    registry: Annotated[str, typer.Option(envvar="AF_REGISTRY_ADDR")] = "127.0.0.1:7101",
    signer: Annotated[str, typer.Option(envvar="AF_SIGNER_ADDR")] = "127.0.0.1:7102",
    scheduler: Annotated[str, typer.Option(envvar="AF_SCHEDULER_ADDR")] = "127.0.0.1:7105",
    ca: Annotated[Path | None, typer.Option(envvar="AF_CA", help="CA certificate (PEM) for mTLS")] = None,
    cert: Annotated[Path | None, typer.Option(envvar="AF_CERT", help="client certificate (PEM)")] = None,
    key: Annotated[Path | None, typer.Option(envvar="AF_KEY", help="client private key (PEM)")] = None,
    token: Annotated[str, typer.Option(envvar="AF_TOKEN", help="JWT bearer token (role claim)")] = "",
    timeout: Annotated[float, typer.Option(help="per-call deadline in seconds")] = 10.0,
    color: Annotated[
        str,
        typer.Option(
            envvar="AF_COLOR",
            callback=_color,
            help="send every call to this color of a blue/green service (green, blue)",
        ),
    ] = "",
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print afctl's version and exit")
    ] = False,
) -> None:
    if (cert is None) != (key is None):
        raise typer.BadParameter("give both --cert and --key, or neither (JWT over TLS with --ca and --token)")
    # --ca alone is TLS without a client certificate: the gateway then needs a JWT (--token).
    tls = Tls(ca, cert, key) if ca else None
    endpoints = (
        Endpoints.gateway(gateway, tls, token or None, color or None)
        if gateway
        else Endpoints(registry, signer, scheduler, tls, token or None, color or None)
    )
    STATE["endpoints"] = endpoints
    STATE["target"] = gateway or "the services"
    STATE["timeout"] = timeout


def client() -> Client:
    return Client(STATE["endpoints"], STATE["timeout"])


def split_ref(ref: str) -> tuple[str, str]:
    name, _, version = ref.partition("@")
    return name, version


def read_input(value: str) -> bytes:
    if value.startswith("@"):
        return Path(value[1:]).read_bytes()
    if value == "-":
        return sys.stdin.buffer.read()
    return value.encode()


def fail(exc: grpc.RpcError) -> None:
    code, message = classify_rpc_error(exc, STATE.get("target", "the gateway"))
    print(f"afctl: error: {printable(message)}", file=sys.stderr)  # e.g. an agent's failure reason
    raise typer.Exit(code)


# --- templates -------------------------------------------------------------------------------------

# A module this large takes long enough to upload that a person wants to see it move.
PROGRESS_MIN_BYTES = 1024 * 1024


@contextlib.contextmanager
def upload_progress(total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (gone when done) and the function that advances it."""
    columns = (TextColumn("uploading module"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("upload", total=total)
        yield lambda n: bar.advance(task, n)


def _read_files(specs: list[str]) -> dict[str, bytes]:
    """`--file GUEST=LOCAL` values as guest path -> bytes (the registry checks the paths and the policy)."""
    files: dict[str, bytes] = {}
    for spec in specs:
        guest, sep, local = spec.partition("=")
        if not sep or not guest or not local:
            raise typer.BadParameter(f"{spec[:80]!r} must look like GUEST_PATH=LOCAL_PATH", param_hint="--file")
        if guest in files:
            raise typer.BadParameter(f"{guest[:80]!r} is given twice", param_hint="--file")
        files[guest] = Path(local).read_bytes()
    return files


@templates_app.command("publish")
def publish(
    manifest: Annotated[Path, typer.Argument(help="template.json (or its directory)")],
    module: Annotated[Path | None, typer.Option(help="the .wasm module (omit to inherit the parent's)")] = None,
    file: Annotated[
        list[str] | None,
        typer.Option(help="a read-only template file, GUEST_PATH=LOCAL_PATH (e.g. /data/words.txt=words.txt); repeat"),
    ] = None,
) -> None:
    """Publish one template."""
    path = manifest / "template.json" if manifest.is_dir() else manifest
    manifest_json, module_bytes = path.read_bytes(), module.read_bytes() if module else None
    files = _read_files(file or [])
    total = len(module_bytes or b"") + sum(len(data) for data in files.values())
    with client() as c:
        try:
            if total >= PROGRESS_MIN_BYTES and err.is_terminal:
                with upload_progress(total) as advance:
                    reply = c.publish(manifest_json, module_bytes, progress=advance, files=files)
            else:
                reply = c.publish(manifest_json, module_bytes, files=files)
        except grpc.RpcError as exc:
            fail(exc)
    t = reply.template
    verb = "published" if reply.created else "already published (identical)"
    console.print(f"{t.manifest.name}@{t.manifest.version} {verb}: key v{t.signature.key_version}, rev {t.revision}")


@templates_app.command("publish-examples")
def publish_examples(kind: Annotated[str, typer.Option(help="agents or hostile")] = "agents") -> None:
    """Publish every example template (parents first). Modules come from `make examples`."""
    with client() as c:
        for example in catalogue(kind):
            if example.module_path and not example.module_path.exists():
                err.print(f"missing {example.module_path}; run `make examples`", style="red")
                raise typer.Exit(1)
            try:
                reply = c.publish(example.manifest_json(), example.module(), files=example.files())
            except grpc.RpcError as exc:
                fail(exc)
            state = "published" if reply.created else "unchanged"
            console.print(f"  {example.ref:<28} {state:<10} sha256 {reply.template.manifest.module_sha256[:12]}…")


@templates_app.command("list")
def list_templates(
    name: str = "",
    label: Annotated[str, typer.Option(help="k=v,k2=v2")] = "",
    deprecated: bool = False,
    output: OutputOption = Format.table,
) -> None:
    """List templates."""
    with client() as c:
        try:
            found = c.list_templates(name=name, label_selector=label, include_deprecated=deprecated)
        except grpc.RpcError as exc:
            fail(exc)

    def draw() -> None:
        table = Table("template", "version", "tools", "extends", "key", "deprecated")
        for t in found:
            m = t.manifest
            key = f"v{t.signature.key_version}"
            table.add_row(m.name, m.version, ",".join(m.tools), m.extends, key, str(t.deprecated))
        console.print(table)

    emit(output, found, draw, console)


@templates_app.command("get")
def get_template(ref: str, output: OutputOption = Format.json) -> None:
    """Show a template (name or name@version); JSON unless -o says otherwise."""
    with client() as c:
        try:
            t = c.get_template(*split_ref(ref))
        except grpc.RpcError as exc:
            fail(exc)

    def draw() -> None:
        m = t.manifest
        table = Table(show_header=False)
        for field, value in [
            ("template", f"{m.name}@{m.version}"),
            ("description", m.description),
            ("extends", m.extends),
            ("tools", ",".join(m.tools)),
            ("module sha256", m.module_sha256),
            ("key", f"{t.signature.key_id} v{t.signature.key_version}"),
            ("deprecated", str(t.deprecated)),
        ]:
            table.add_row(field, value)
        console.print(table)

    emit(output, t, draw, console)


@templates_app.command("verify")
def verify_template(ref: str) -> None:
    """Verify a template offline: signature over its canonical bytes with the public keys, and the module digest."""
    with client() as c:
        try:
            t = c.get_template(*split_ref(ref))
            module = c.fetch_module(t.manifest.module_sha256)
            version = c.verify_offline(t, module)
        except grpc.RpcError as exc:
            fail(exc)
        except Exception as exc:
            err.print(styled(("NOT VERIFIED", "red"), f": {exc}"))
            raise typer.Exit(2) from None
    console.print(
        styled(("verified", "green"), f" {t.manifest.name}@{t.manifest.version}: signature key v{version}, module ok")
    )


@templates_app.command("resign")
def resign(
    ref: Annotated[str, typer.Argument(help="name@version; omit with --all-revoked")] = "",
    all_revoked: Annotated[
        bool, typer.Option("--all-revoked", help="every template signed by a key version no longer live")
    ] = False,
) -> None:
    """Re-sign templates whose signing key version was revoked (admin). Content never changes."""
    name, version = split_ref(ref) if ref else ("", "")
    with client() as c:
        try:
            reply = c.resign(name, version, all_revoked)
        except grpc.RpcError as exc:
            fail(exc)
    for t in reply.templates:
        console.print(f"re-signed {t.manifest.name}@{t.manifest.version}: key v{t.signature.key_version}")
    console.print(f"{len(reply.templates)} re-signed, {reply.unchanged} already signed by a live key")


@templates_app.command("deprecate")
def deprecate(ref: str, reason: str = "") -> None:
    """Deprecate one template version."""
    from agentfactory.registry.v1 import registry_service_pb2 as reg_pb

    name, version = split_ref(ref)
    with client() as c:
        try:
            c.registry.DeprecateTemplate(
                reg_pb.DeprecateTemplateRequest(name=name, version=version, reason=reason),
                timeout=c.timeout,
                metadata=c.metadata,
            )
        except grpc.RpcError as exc:
            fail(exc)
    console.print(f"{ref} deprecated")


# --- agents --------------------------------------------------------------------------------------


def show_agent(agent: sch_pb.Agent) -> None:
    table = Table(show_header=False)
    state = sch_pb.AgentState.Name(agent.state).removeprefix("AGENT_STATE_")
    for field, value in [
        ("id", agent.id),
        ("template", f"{agent.template_name}@{agent.template_version}"),
        ("state", state),
        ("reason", agent.reason),
        ("exit code", str(agent.exit_code)),
        ("fuel used", f"{agent.fuel_used:,}"),
        ("executor", agent.executor),
        ("attempts", str(agent.attempts)),
    ]:
        table.add_row(field, value)
    console.print(table)


@app.command("run")
def run(
    template: Annotated[str, typer.Argument(help="name or name@version")],
    input: Annotated[str, typer.Option("--input", "-i", help="input text, @file, or - for stdin")] = "",
) -> None:
    """Run an agent to the end, streaming its output."""
    name, version = split_ref(template)
    final = sch_pb.Agent()
    # The output as WatchAgent's is read (afctl/watching.py): a run that starts over is said, not glued on.
    printer = WatchPrinter(states=False)
    with client() as c:
        try:
            for event in c.run_agent(name, read_input(input), version=version):
                printer.event(event)
                if event.WhichOneof("event") == "agent":
                    final = event.agent
        except grpc.RpcError as exc:
            printer.end_output()
            if final.id:
                show_agent(final)
            fail(exc)
    printer.end_output()
    console.print()
    show_agent(final)
    if final.state != sch_pb.AGENT_STATE_SUCCEEDED:
        raise typer.Exit(3)


@agents_app.command("create")
def create(template: str, input: Annotated[str, typer.Option("--input", "-i")] = "", request_id: str = "") -> None:
    """Create an agent and return at once."""
    name, version = split_ref(template)
    request = sch_pb.CreateAgentRequest(
        template_name=name, template_version=version, input=read_input(input), request_id=request_id
    )
    with client() as c:
        try:
            agent = c.scheduler.CreateAgent(request, timeout=c.timeout, metadata=c.metadata).agent
        except grpc.RpcError as exc:
            fail(exc)
    console.print(agent.id)


@agents_app.command("get")
def get_agent(agent_id: str, output: OutputOption = Format.table) -> None:
    """Show one agent."""
    with client() as c:
        try:
            agent = c.scheduler.GetAgent(sch_pb.GetAgentRequest(id=agent_id), timeout=c.timeout, metadata=c.metadata)
        except grpc.RpcError as exc:
            fail(exc)

    def draw() -> None:
        show_agent(agent.agent)
        if agent.agent.output:
            console.print(agent.agent.output.decode(errors="replace"))

    emit(output, agent.agent, draw, console)


STATES = [
    n.removeprefix("AGENT_STATE_").lower()
    for n in (v.name for v in sch_pb.AgentState.DESCRIPTOR.values)
    if not n.endswith("UNSPECIFIED")
]


def _agent_state(value: str) -> str:
    if value and value.lower() not in STATES:
        raise typer.BadParameter(f"must be one of {', '.join(STATES)}")
    return value


def _instant(value: str) -> str:
    if value:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise typer.BadParameter("an ISO-8601 time, e.g. 2026-12-07T04:00:00Z") from None
    return value


def _timestamp(value: str) -> Timestamp | None:
    if not value:
        return None
    when = datetime.fromisoformat(value)
    stamp = Timestamp()
    stamp.FromDatetime(when if when.tzinfo else when.replace(tzinfo=UTC))
    return stamp


@agents_app.command("list")
def list_agents(
    template: str = "",
    state: Annotated[str, typer.Option(callback=_agent_state, help=f"one of {', '.join(STATES)}")] = "",
    label: Annotated[str, typer.Option(help="label selector, k=v,k2=v2")] = "",
    created_after: Annotated[str, typer.Option(callback=_instant, help="ISO-8601, inclusive (UTC if no zone)")] = "",
    created_before: Annotated[str, typer.Option(callback=_instant, help="ISO-8601, exclusive")] = "",
    page_size: int = 50,
    output: OutputOption = Format.table,
) -> None:
    """List agents, newest first."""
    state_value = sch_pb.AgentState.Value(f"AGENT_STATE_{state.upper()}") if state else 0
    # grpc_tools' stubs take an enum field as its wrapper type (or name); the runtime takes the int.
    request = sch_pb.ListAgentsRequest(
        template_name=template,
        state=state_value,  # type: ignore[arg-type]
        label_selector=label,
        page_size=page_size,
        created_after=_timestamp(created_after),
        created_before=_timestamp(created_before),
    )
    with client() as c:
        try:
            page = c.scheduler.ListAgents(request, timeout=c.timeout, metadata=c.metadata)
        except grpc.RpcError as exc:
            fail(exc)

    def draw() -> None:
        table = Table("id", "template", "state", "reason")
        for a in page.agents:
            state_name = sch_pb.AgentState.Name(a.state).removeprefix("AGENT_STATE_")
            table.add_row(a.id, f"{a.template_name}@{a.template_version}", state_name, a.reason)
        console.print(table)

    emit(output, page.agents, draw, console)


class WatchPrinter:
    """Writes a watched agent's output to stdout and, with ``states``, its state lines between, each on its
    own line. Output is decoded as one UTF-8 stream: a character split across two output events (the
    executor cuts output in fixed-size chunks) is printed whole, not as two replacement characters."""

    def __init__(self, states: bool = True) -> None:
        self.output = WatchedOutput()
        self.states = states
        self.mid_line = False  # the last output written did not end its line
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.terminal = sys.stdout.isatty()

    def event(self, event: sch_pb.WatchAgentResponse | sch_pb.RunAgentResponse) -> None:
        kind = event.WhichOneof("event")
        if kind == "agent":
            self.state(event.agent)
        elif kind == "output":
            self.write(self.output.on_output(event.output.data))
        elif kind == "log":
            err.print(f"{event.log.level}: {event.log.message}", style="dim")

    def state(self, agent: sch_pb.Agent) -> None:
        terminal = agent.state in TERMINAL_STATES
        printable = self.output.on_agent(agent.output, terminal, agent.output_truncated)
        if terminal:  # what it wrote, then how it ended
            self.write(printable)
            self.end_output()
        if not self.states:
            if not terminal:
                self.write(printable)
            return
        if self.mid_line:
            sys.stdout.write("\n")
            self.mid_line = False
        name = sch_pb.AgentState.Name(agent.state).removeprefix("AGENT_STATE_")
        console.print(styled((name, "bold"), f" {agent.reason}" if agent.reason else ""))
        if not terminal:
            self.write(printable)

    def write(self, printable: Printable) -> None:
        if printable.restart:  # what follows does not continue what went before: not even its line
            self.end_output()
            if self.mid_line:
                sys.stdout.write("\n")
                self.mid_line = False
        if printable.notice:
            sys.stdout.flush()
            err.print(printable.notice, style="yellow")
        if printable.data:
            self._text(self._decoder.decode(printable.data))
            self.mid_line = not printable.data.endswith(b"\n")

    def end_output(self) -> None:
        """The output so far is whole: the bytes of a character it ends in the middle of are printed
        as a replacement character."""
        self._text(self._decoder.decode(b"", final=True))
        self._decoder.reset()

    def _text(self, text: str) -> None:
        if text:
            # On a terminal the agent's escape sequences are shown, not obeyed (afctl/output.py printable);
            # into a pipe or a file its output goes as it is.
            sys.stdout.write(printable(text) if self.terminal else text)
            sys.stdout.flush()


@agents_app.command("watch")
def watch(agent_id: str) -> None:
    """Stream an agent's state changes and output until it ends (a finished agent: its output and ending)."""
    with client() as c:
        try:
            printer = WatchPrinter()
            for event in c.scheduler.WatchAgent(sch_pb.WatchAgentRequest(id=agent_id), metadata=c.metadata):
                printer.event(event)
        except grpc.RpcError as exc:
            printer.end_output()
            fail(exc)
        printer.end_output()


@agents_app.command("cancel")
def cancel(agent_id: str) -> None:
    """Cancel a pending or running agent."""
    with client() as c:
        try:
            reply = c.scheduler.CancelAgent(
                sch_pb.CancelAgentRequest(id=agent_id), timeout=c.timeout, metadata=c.metadata
            )
        except grpc.RpcError as exc:
            fail(exc)
    show_agent(reply.agent)


# --- keys ----------------------------------------------------------------------------------------


@keys_app.command("list")
def list_keys(output: OutputOption = Format.table) -> None:
    """List live public key versions."""
    with client() as c:
        try:
            reply = c.public_keys()
        except grpc.RpcError as exc:
            fail(exc)

    def draw() -> None:
        table = Table("key", "version", "created", "signing")
        for k in reply.keys:
            created = k.create_time.ToDatetime().isoformat(timespec="seconds") if k.create_time.seconds else ""
            signing = "yes" if k.key_version == reply.latest_version else ""
            table.add_row(k.key_id, str(k.key_version), created, signing)
        console.print(table)
        console.print(f"minimum live version: {reply.min_version}")

    emit(output, reply, draw, console)


@keys_app.command("rotate")
def rotate() -> None:
    """Create a new signing key version (admin)."""
    with client() as c:
        try:
            reply = c.rotate_key()
        except grpc.RpcError as exc:
            fail(exc)
    console.print(f"now signing with {reply.key.key_id} v{reply.key.key_version}")


@keys_app.command("revoke")
def revoke(min_version: Annotated[int, typer.Option(help="lowest version that stays valid")]) -> None:
    """Revoke every key version below --min-version (admin)."""
    with client() as c:
        try:
            reply = c.signer.SetMinimumKeyVersion(
                sig_pb.SetMinimumKeyVersionRequest(min_version=min_version), timeout=c.timeout, metadata=c.metadata
            )
        except grpc.RpcError as exc:
            fail(exc)
    console.print(f"minimum live version is now {reply.min_version}")


def main() -> None:
    """The `afctl` console script: one line on stderr and a documented exit code for every expected failure."""
    try:
        code = app(prog_name="afctl", standalone_mode=False)
    except typer.TyperException as exc:  # typer's (vendored click's) usage errors: bad flag, bad value
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())  # `afctl` or `afctl agents` alone: the help, as before
        else:
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            print(f"afctl: error: {exc.format_message()}{hint}", file=sys.stderr)
        code = exc.exit_code
    except typer.Abort:
        print("afctl: interrupted", file=sys.stderr)
        code = 130
    except OSError as exc:  # a certificate, key, manifest, module or input file
        code, message = file_error(exc)
        print(f"afctl: error: {message}", file=sys.stderr)
    except grpc.RpcError as exc:  # a call made outside a command's own handling
        code, message = classify_rpc_error(exc, STATE.get("target", "the gateway"))
        print(f"afctl: error: {printable(message)}", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
