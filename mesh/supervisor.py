"""Supervise the local mesh with supervisord: every Envoy and every service process.

    python -m mesh.supervisor render [--envoy-only] [--postgres DIR]   # write build/mesh/supervisord.conf
    python -m mesh.supervisor up [--envoy-only]       # render, start or update supervisord, wait for Envoys
    python -m mesh.supervisor status
    python -m mesh.supervisor down                    # stop everything (supervisord included), wait for it

supervisord restarts anything that dies (autorestart=true). Services are started after their
sidecars (priority) and read the AF_* settings the topology implies; their upstream addresses
are their own sidecar's loopback outbound listeners. Runtime state lives under ``var/``:
``var/run`` (socket, pid), ``var/log`` (one log per program), ``var/data/<instance>``.

With ``--postgres DIR`` (``make run BACKEND=postgres``) supervisord also runs the topology's local
PostgreSQL (mesh/pglocal.py, data in DIR) and the services its ``database`` section names get
AF_DATABASE_URL: their own role and database, so both scheduler colors share one journal.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh import DEFAULT_OUT_DIR, DEFAULT_TOPOLOGY, REPO
from mesh.envoy import Admin, base_args
from mesh.pglocal import service_dsn
from mesh.render import envoy_paths, write_atomic
from mesh.topology import Instance, Topology, load

DEFAULT_VAR = REPO / "var"
PROMETHEUS_ADDR = "127.0.0.1:9090"
ALERTMANAGER_ADDR = "127.0.0.1:9093"  # as observability.alerting and `make run` give Prometheus
ALERT_SINK_ADDR = "127.0.0.1:9095"


def service_env(topo: Topology, inst: Instance, data_root: Path, postgres_dir: Path | None = None) -> dict[str, str]:
    """The settings a service process reads (see services/common/config.py). With ``postgres_dir`` the
    services the topology's database serves get their DSN."""
    svc = topo.services[inst.service]
    env = {
        "AF_SERVICE_ID": inst.id,
        "AF_LISTEN_ADDR": inst.app_addr,
        "AF_METRICS_ADDR": f"127.0.0.1:{inst.metrics}",
        "AF_DATA_DIR": str(data_root / inst.id),
        "PYTHONUNBUFFERED": "1",
    }
    if topo.otlp_endpoint:
        env["AF_OTLP_ENDPOINT"] = topo.otlp_endpoint
        # Export every second (the SDK waits 5 s), like the Envoys: a trace is whole soon after the call.
        env["OTEL_BSP_SCHEDULE_DELAY"] = "1000"
    # Upstreams are the caller's own sidecar: plaintext on loopback, mTLS from there on.
    for up, port in inst.outbound.items():
        key = "AF_EXECUTOR_ADDRS" if up == "executor" else f"AF_{up.upper()}_ADDR"
        env[key] = f"127.0.0.1:{port}"
    if inst.service in svc.upstreams and inst.color:
        # Its own service's other colors, reached through AF_<SERVICE>_ADDR with x-agentfactory-color.
        env["AF_PEER_COLORS"] = ",".join(c for c in svc.colors if c != inst.color)
    if postgres_dir is not None and topo.database is not None and inst.service in topo.database.services:
        env["AF_DATABASE_URL"] = service_dsn(postgres_dir.resolve(), topo.database.port, inst.service)
    env.update(svc.env)
    return env


def _ini_env(env: Mapping[str, str]) -> str:
    # supervisord expands %(...)s in values: double every %; quote values for commas/spaces.
    def quote(v: str) -> str:
        return '"' + v.replace("%", "%%").replace('"', '\\"') + '"'

    return ",".join(f"{k}={quote(v)}" for k, v in env.items())


def render_conf(
    topo: Topology,
    *,
    out_dir: Path = DEFAULT_OUT_DIR,
    var_dir: Path = DEFAULT_VAR,
    envoy_only: bool = False,
    python: str = sys.executable,
    prometheus_config: Path | None = None,
    prometheus_addr: str = PROMETHEUS_ADDR,
    trace_sink: bool = False,
    launcher: Callable[[str, list[str], Mapping[str, str]], list[str]] | None = None,
    alertmanager_config: Path | None = None,
    postgres_dir: Path | None = None,
) -> Path:
    """supervisord.conf for the topology. ``launcher(program, command, env)`` may replace each Envoy's
    and service's command (mesh.containers runs them from the images that way). ``postgres_dir``: also
    run the topology's local PostgreSQL with its data there, and point the services at it."""
    if postgres_dir is not None and topo.database is None:
        raise ValueError("--postgres needs a `database` section in the topology (port, services)")
    out_dir, var_dir = out_dir.resolve(), var_dir.resolve()
    run, logs, data = var_dir / "run", var_dir / "log", var_dir / "data"
    for d in (run, logs, data):
        d.mkdir(parents=True, exist_ok=True)
    concurrency = int(topo.envoy.get("concurrency", 1))
    log_level = str(topo.envoy.get("log_level", "warning"))
    lines = [
        "; Rendered by `python -m mesh.supervisor`; do not edit by hand.",
        "[unix_http_server]",
        f"file={run / 'supervisor.sock'}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={logs / 'supervisord.log'}",
        f"pidfile={run / 'supervisord.pid'}",
        f"childlogdir={logs}",
        f"directory={REPO}",
        "logfile_maxbytes=10MB",
        "minfds=4096",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{run / 'supervisor.sock'}",
        "",
    ]
    envoys, services = [], []
    for envoy_id in topo.envoy_ids():
        name = f"envoy-{envoy_id}"
        envoys.append(name)
        cmd = base_args(envoy_paths(out_dir, envoy_id).bootstrap, concurrency=concurrency, log_level=log_level)
        if launcher:
            cmd = launcher(name, cmd, {})
        lines += [
            f"[program:{name}]",
            f"command={' '.join(cmd)}",
            # Sidecars first, the gateway last: it is the front door and should open when the rest is up.
            f"priority={300 if envoy_id == topo.gateway.id else 100}",
            "autostart=true",
            "autorestart=true",
            "startsecs=1",
            "startretries=20",
            "stopsignal=TERM",
            "stopwaitsecs=10",
            "redirect_stderr=true",
            f"stdout_logfile={logs / (name + '.log')}",
            "stdout_logfile_maxbytes=20MB",
            "",
        ]
    if not envoy_only:
        for inst in topo.instances():
            services.append(inst.id)
            module = topo.services[inst.service].module
            env = service_env(topo, inst, data, postgres_dir)
            cmd = launcher(inst.id, [python, "-m", module], env) if launcher else [python, "-m", module]
            lines += [
                f"[program:{inst.id}]",
                f"command={' '.join(cmd)}",
                f"directory={REPO}",
                f"environment={_ini_env(env)}",
                "priority=200",
                "autostart=true",
                "autorestart=true",
                "startsecs=2",
                "startretries=20",
                "stopsignal=TERM",
                # Services drain in-flight calls on SIGTERM (grace period) before exiting.
                "stopwaitsecs=20",
                "redirect_stderr=true",
                f"stdout_logfile={logs / (inst.id + '.log')}",
                "stdout_logfile_maxbytes=20MB",
                "",
            ]
    if postgres_dir is not None and topo.database is not None:
        # Before the services (priority): they wait for it anyway (UNAVAILABLE, then a retry), but a
        # first start is quicker. SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for every
        # pooled connection to close); a crash is restarted like any other program.
        db = topo.database
        lines += [
            "[program:postgres]",
            f"command={python} -m mesh.pglocal serve {postgres_dir.resolve()} {db.port} {' '.join(db.services)}",
            f"directory={REPO}",
            "priority=60",
            "autostart=true",
            "autorestart=true",
            "startsecs=2",
            "startretries=10",
            "stopsignal=INT",
            "stopwaitsecs=30",
            "redirect_stderr=true",
            f"stdout_logfile={logs / 'postgres.log'}",
            "stdout_logfile_maxbytes=20MB",
            "",
        ]
    if trace_sink and topo.otlp_endpoint:
        # The OTLP receiver every Envoy and service exports to (observability/trace_sink.py); first, so
        # the first spans have somewhere to go. `afctl traces` reads its file.
        lines += [
            "[program:trace-sink]",
            f"command={python} -m observability.trace_sink --listen {topo.otlp_endpoint}"
            f" --out {var_dir / 'traces' / 'spans.jsonl'}",
            f"directory={REPO}",
            "priority=50",
            "autostart=true",
            "autorestart=true",
            "startsecs=1",
            "stopsignal=TERM",
            "redirect_stderr=true",
            f"stdout_logfile={logs / 'trace-sink.log'}",
            "stdout_logfile_maxbytes=5MB",
            "",
        ]
    if prometheus_config is not None:
        # Prometheus (Debian package) scrapes every app and Envoy; see observability/render.py.
        lines += [
            "[program:prometheus]",
            f"command=prometheus --config.file={prometheus_config.resolve()}"
            f" --storage.tsdb.path={var_dir / 'prometheus'} --storage.tsdb.retention.time=2d"
            f" --web.listen-address={prometheus_addr}",
            "priority=400",
            "autostart=true",
            "autorestart=true",
            "startsecs=1",
            "redirect_stderr=true",
            f"stdout_logfile={logs / 'prometheus.log'}",
            "stdout_logfile_maxbytes=20MB",
            "",
        ]
    if alertmanager_config is not None:
        # Alertmanager (Debian package) routes Prometheus' alerts to the receivers of
        # observability/alerting.py; locally those post to the alert sink (var/alerts/alerts.jsonl).
        lines += [
            "[program:alertmanager]",
            f"command=prometheus-alertmanager --config.file={alertmanager_config.resolve()}"
            f" --storage.path={var_dir / 'alertmanager'} --web.listen-address={ALERTMANAGER_ADDR}"
            " --cluster.listen-address=",
            "priority=390",
            "autostart=true",
            "autorestart=true",
            "startsecs=1",
            "redirect_stderr=true",
            f"stdout_logfile={logs / 'alertmanager.log'}",
            "stdout_logfile_maxbytes=5MB",
            "",
            "[program:alert-sink]",
            f"command={python} -m observability.alert_sink --listen {ALERT_SINK_ADDR}"
            f" --out {var_dir / 'alerts' / 'alerts.jsonl'}",
            f"directory={REPO}",
            "priority=380",
            "autostart=true",
            "autorestart=true",
            "startsecs=1",
            "redirect_stderr=true",
            f"stdout_logfile={logs / 'alert-sink.log'}",
            "stdout_logfile_maxbytes=5MB",
            "",
        ]
    lines += ["[group:envoy]", f"programs={','.join(envoys)}", ""]
    if services:
        lines += ["[group:services]", f"programs={','.join(services)}", ""]
    conf = out_dir / "supervisord.conf"
    write_atomic(conf, "\n".join(lines))
    return conf


def _ctl(conf: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    ctl = str(Path(sys.executable).parent / "supervisorctl")
    return subprocess.run([ctl, "-c", str(conf), *args], capture_output=True, text=True, check=check)


def running(conf: Path) -> bool:
    # `supervisorctl pid` prints supervisord's pid only when it answers on the socket.
    return _ctl(conf, "pid").stdout.strip().isdigit()


def _bootstrap_digests(topo: Topology, out_dir: Path) -> dict[str, str]:
    return {
        eid: hashlib.sha256(envoy_paths(out_dir, eid).bootstrap.read_bytes()).hexdigest() for eid in topo.envoy_ids()
    }


def _serving(addr: str) -> bool:
    with grpc.insecure_channel(addr) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def up(conf: Path, topo: Topology, out_dir: Path = DEFAULT_OUT_DIR, timeout: float = 60.0) -> list[str]:
    """Start supervisord, or bring a running one up to date; wait until everything is ready.

    Idempotent: with nothing changed, nothing restarts. Routes and certificates never need a
    restart (Envoy watches those files); a changed bootstrap (listeners, clusters) restarts
    just that Envoy. Returns what was not ready in time (Envoy ids and service instance ids).
    """
    digests = _bootstrap_digests(topo, out_dir)
    state = conf.parent / "bootstrap-digests.json"
    if running(conf):
        _ctl(conf, "update", check=True)  # reread + update: programs whose supervisor entry changed
        old = json.loads(state.read_text()) if state.exists() else {}
        for eid, digest in digests.items():
            if old.get(eid) not in (None, digest):
                _ctl(conf, "restart", f"envoy:envoy-{eid}")
        _ctl(conf, "start", "all")
    else:
        supervisord = str(Path(sys.executable).parent / "supervisord")
        subprocess.run([supervisord, "-c", str(conf)], check=True)
    write_atomic(state, json.dumps(digests, indent=2) + "\n")
    checks: dict[str, Callable[[], bool]] = {
        eid: Admin(topo.gateway.admin if eid == topo.gateway.id else topo.instance(eid).admin).ready
        for eid in topo.envoy_ids()
    }
    programs = _ctl(conf, "status").stdout
    for inst in topo.instances():
        if f"services:{inst.id} " in programs:
            # The app's own health on loopback: SERVING once it has wired its dependencies.
            checks[inst.id] = lambda addr=inst.app_addr: _serving(addr)
    deadline = time.monotonic() + timeout
    pending = list(checks)
    while pending and time.monotonic() < deadline:
        pending = [name for name in pending if not checks[name]()]
        if pending:
            time.sleep(0.2)
    return pending


def _supervisord_pid(conf: Path) -> int | None:
    """The live supervisord started with ``conf``, from its pid file. The command line must name the
    conf: a stale pid file's pid may by now be another program, or another mesh's supervisord."""
    parser = configparser.RawConfigParser(strict=False)
    parser.read(conf)
    pidfile = Path(parser.get("supervisord", "pidfile", fallback=""))
    try:
        pid = int(pidfile.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    named = any(str(c).encode() in cmdline for c in (conf, conf.resolve()))
    return pid if b"supervisord" in cmdline and named else None


def _stat(path: Path) -> tuple[str, int] | None:
    """A process's state letter and process group from /proc/<pid>/stat; None once it is gone."""
    try:
        # The command may hold spaces and parentheses: the fields after its last ')' are fixed.
        fields = path.read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[2])


def _alive(pid: int) -> bool:
    # A zombie has exited (nothing reaps a daemon's orphans promptly here); its ports are free.
    stat = _stat(Path(f"/proc/{pid}/stat"))
    return stat is not None and stat[0] != "Z"


def _live_groups(groups: set[int]) -> set[int]:
    """Which of these process groups still have a live member. supervisord starts each program in a
    group of its own (setpgrp), so a program's children (PostgreSQL's backends) count too."""
    stats = (_stat(path) for path in Path("/proc").glob("[0-9]*/stat"))
    return {stat[1] for stat in stats if stat is not None and stat[0] != "Z" and stat[1] in groups}


def down(conf: Path, timeout: float = 90.0) -> list[str]:
    """Stop supervisord and everything it runs; return once all of it has exited, so that a new
    supervisord can take the socket and the programs' ports at once. Returns what was still alive
    after ``timeout`` (empty when all is gone). supervisord stops answering as soon as it begins its
    shutdown, while it may still wait up to a program's stopwaitsecs (30 s at most here) for it: wait
    for the processes themselves, not the socket."""
    pid = _supervisord_pid(conf)
    if pid is None:
        return []
    # Already shutting down (a second `make stop`): no pids from the socket, but supervisord itself
    # exits only after its programs.
    groups = {int(p) for p in _ctl(conf, "pid", "all").stdout.split() if p.isdigit() and p != "0"}  # 0: stopped
    _ctl(conf, "shutdown")
    deadline = time.monotonic() + timeout
    while True:
        left = ([f"supervisord (pid {pid})"] if _alive(pid) else []) + [
            f"process group {g}" for g in sorted(_live_groups(groups))
        ]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mesh.supervisor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--var-dir", type=Path, default=DEFAULT_VAR)
    parser.add_argument("command", choices=["render", "up", "status", "down"])
    parser.add_argument("--envoy-only", action="store_true", help="supervise the Envoys but no service processes")
    parser.add_argument("--prometheus", type=Path, help="also supervise Prometheus with this config file")
    # The same address given to `observability.render --prometheus-addr` (it scrapes itself there).
    parser.add_argument("--prometheus-addr", default=PROMETHEUS_ADDR, help="Prometheus listen address")
    parser.add_argument(
        "--trace-sink", action="store_true", help="also supervise the OTLP trace sink on the topology's telemetry.otlp"
    )
    parser.add_argument(
        "--alertmanager", type=Path, help="also supervise Alertmanager with this config, and its alert sink"
    )
    parser.add_argument(
        "--postgres", type=Path, help="also supervise the topology's PostgreSQL with its data in this directory"
    )
    args = parser.parse_args(argv)
    topo = load(args.topology)
    conf = args.out_dir.resolve() / "supervisord.conf"
    if args.command in ("render", "up"):
        conf = render_conf(
            topo,
            out_dir=args.out_dir,
            var_dir=args.var_dir,
            envoy_only=args.envoy_only,
            prometheus_config=args.prometheus,
            prometheus_addr=args.prometheus_addr,
            trace_sink=args.trace_sink,
            alertmanager_config=args.alertmanager,
            postgres_dir=args.postgres,
        )
        print(f"wrote {conf}")
    if args.command == "up":
        late = up(conf, topo, args.out_dir)
        if late:
            print(f"not ready: {', '.join(late)} (logs in {args.var_dir / 'log'})", file=sys.stderr)
            return 1
        print(f"mesh up: {len(topo.envoy_ids())} Envoys ready; gateway on {topo.gateway.addr}")
    elif args.command == "status":
        print(_ctl(conf, "status").stdout, end="")
    elif args.command == "down":
        left = down(conf)
        if left:
            print(f"still running after the wait: {', '.join(left)}", file=sys.stderr)
            return 1
        print("supervisord stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
