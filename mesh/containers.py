"""Run the mesh's processes from the container images (`make images`) instead of the venv.

    python -m mesh.containers up      # the `make run` topology, every Envoy and service a container
    python -m mesh.containers down    # stop it (supervisord, the containers, the image daemon)

The topology, certificates, rendered Envoy configs and supervisord are the ones `make run` uses;
only the command of each program changes: `docker run --network host` of
``agentfactory/<service>`` (or ``agentfactory/envoy``) with the same arguments, as uid 65532, on a
read-only root file system with every capability dropped. Host networking keeps every address the
topology's loopback one (no bridge, no private-range address). The configs and certificates are
bind-mounted read-only at their own paths (Envoy still sees rotated certificates and weight
changes: the directories are mounted, not the files); each service's data directory is the one
writable mount.

supervisord supervises the `docker run` clients: a TERM to the client is passed to the container
(sig-proxy) and `--rm` removes it, and `down` removes whatever is left by its label.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mesh import DEFAULT_OUT_DIR, DEFAULT_TOPOLOGY, REPO

DOCKER = "/usr/bin/docker"
DOCKERD_SCRIPT = REPO / "images" / "dockerd.sh"
DEFAULT_DOCKER_DIR = REPO / "build" / "docker"
IMAGE_UID = 65532
LABEL = "agentfactory.run"


def image_tag() -> str:
    """The chart's appVersion: the tag `make images` gives every image and the chart deploys."""
    for line in (REPO / "helm" / "agentfactory" / "Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise ValueError("helm/agentfactory/Chart.yaml has no appVersion")


class Daemon:
    """Our own dockerd (images/dockerd.sh): its socket, and start/stop by its pid file."""

    def __init__(self, directory: Path = DEFAULT_DOCKER_DIR) -> None:
        self.directory = directory.resolve()
        self.host = f"unix://{self.directory / 'docker.sock'}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0"}

    def _script(self, action: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_DIR": str(self.directory)}
        return subprocess.run([str(DOCKERD_SCRIPT), action], env=env, capture_output=True, text=True, timeout=120)

    def running(self) -> bool:
        return self._script("status").returncode == 0

    def start(self) -> None:
        proc = self._script("start")
        if proc.returncode != 0:
            raise RuntimeError(f"dockerd did not start: {proc.stderr.strip()[-2000:]}")

    def stop(self) -> None:
        self._script("stop")

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOCKER, *args], env=self.env(), capture_output=True, text=True, timeout=timeout)

    def has_image(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref).returncode == 0

    def remove_labelled(self, value: str) -> None:
        """Remove every container of one run (by label), running or not."""
        ids = self.docker("ps", "-aq", "--filter", f"label={LABEL}={value}").stdout.split()
        if ids:
            self.docker("rm", "-f", *ids)


def run_args(
    image: str,
    name: str,
    command: Sequence[str],
    *,
    env_names: Iterable[str] = (),
    read_only_mounts: Iterable[Path] = (),
    writable_mounts: Iterable[Path] = (),
    label: str = "default",
    user: int = IMAGE_UID,
) -> list[str]:
    """`docker run` of one mesh process, as the Helm chart runs it (non-root, read-only, no caps).

    Environment variables are passed by name only (`-e NAME`): the docker client forwards the values
    it was started with, so supervisord's `environment=` stays the one place they are written.
    """
    args = [
        DOCKER,
        "run",
        "--rm",
        "--init=false",
        "--name",
        name,
        "--label",
        f"{LABEL}={label}",
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,size=64m",
        "--user",
        f"{user}:{user}",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--stop-timeout",
        "20",
    ]
    for key in env_names:
        args += ["-e", key]
    for path in read_only_mounts:
        args += ["-v", f"{path}:{path}:ro"]
    for path in writable_mounts:
        args += ["-v", f"{path}:{path}:rw"]
    return [*args, image, *command]


def hand_over(paths: Iterable[Path], uid: int = IMAGE_UID) -> None:
    """Give the image user the run's state (certificates, configs, data): the containers run as
    ``uid`` and the CA writes keys 0600. Only when we may (root); otherwise the files are ours."""
    if os.geteuid() != 0:
        return
    for top in paths:
        for root, dirs, files in os.walk(top):
            os.chown(root, uid, uid)
            for name in (*dirs, *files):
                os.lchown(os.path.join(root, name), uid, uid)


class Launcher:
    """Turns the supervisor's commands into `docker run` of the images (see mesh.supervisor)."""

    def __init__(self, daemon: Daemon, *, tag: str, read_only: Sequence[Path], label: str = "default") -> None:
        self.daemon = daemon
        self.tag = tag
        self.read_only = [p.resolve() for p in read_only]
        self.label = label
        hand_over(self.read_only)

    def __call__(self, program: str, command: Sequence[str], env: Mapping[str, str]) -> list[str]:
        name = f"af-{self.label}-{program}"
        if program.startswith("envoy-"):
            # The image's entrypoint is envoy; keep the supervisor's arguments, drop the host binary.
            args = run_args(
                f"agentfactory/envoy:{self.tag}",
                name,
                list(command[1:]),
                read_only_mounts=self.read_only,
                label=self.label,
            )
        else:
            module = command[-1]
            service = module.rsplit(".", 1)[-1]
            # Made here, before docker would make a missing bind-mount source as root.
            data = Path(env["AF_DATA_DIR"])
            data.mkdir(parents=True, exist_ok=True)
            hand_over([data])
            args = run_args(
                f"agentfactory/{service}:{self.tag}",
                name,
                ["python", "-m", module],
                env_names=sorted(env),
                read_only_mounts=self.read_only,
                writable_mounts=[Path(env["AF_DATA_DIR"])],
                label=self.label,
            )
        # supervisord's children inherit its environment: the client must reach our own daemon.
        return ["env", f"DOCKER_HOST={self.daemon.host}", *args]


def missing_images(daemon: Daemon, tag: str) -> list[str]:
    refs = [f"agentfactory/{n}:{tag}" for n in ("registry", "signer", "executor", "scheduler", "envoy")]
    return [r for r in refs if not daemon.has_image(r)]


def main(argv: Sequence[str] | None = None) -> int:
    from mesh.supervisor import DEFAULT_VAR, down, render_conf, up
    from mesh.topology import load

    parser = argparse.ArgumentParser(prog="python -m mesh.containers", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--certs-dir", type=Path, default=REPO / "build" / "certs")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--var-dir", type=Path, default=DEFAULT_VAR)
    parser.add_argument("--prometheus", type=Path, help="also supervise Prometheus with this config file")
    parser.add_argument("--trace-sink", action="store_true")
    parser.add_argument("--alertmanager", type=Path, help="also supervise Alertmanager with this config")
    args = parser.parse_args(argv)
    daemon, tag = Daemon(), image_tag()
    conf = args.out_dir.resolve() / "supervisord.conf"
    if args.command == "down":
        down(conf)
        daemon.remove_labelled("default")
        daemon.stop()
        print("containers stopped, image daemon stopped")
        return 0
    daemon.start()
    missing = missing_images(daemon, tag)
    if missing:
        print(f"missing images: {', '.join(missing)} (run `make images`)", file=sys.stderr)
        return 1
    topo = load(args.topology)
    launcher = Launcher(daemon, tag=tag, read_only=[args.certs_dir, args.out_dir])
    conf = render_conf(
        topo,
        out_dir=args.out_dir,
        var_dir=args.var_dir,
        prometheus_config=args.prometheus,
        trace_sink=args.trace_sink,
        alertmanager_config=args.alertmanager,
        launcher=launcher,
    )
    late = up(conf, topo, args.out_dir, timeout=120)
    if late:
        print(f"not ready: {', '.join(late)} (logs in {args.var_dir / 'log'})", file=sys.stderr)
        return 1
    print(f"mesh up from images ({tag}): {len(topo.envoy_ids())} Envoys; gateway on {topo.gateway.addr}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
