"""Every image starts as the chart runs it (uid 65532, read-only root, no capabilities, host
network) and reaches its gRPC health check SERVING; the images carry no pip and no compiler.

Registry and signer start alone; the executor is given their addresses, the scheduler the
executor's, as the mesh wires them (here without sidecars: the mesh from images is
test_system.py). Each start's time to SERVING is printed (the README's cold start column).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.containers import Daemon, hand_over, run_args
from tests.harness import NotServing, eventually, free_port, wait_serving
from tests.images.conftest import SESSION_LABEL

SERVICES = ("registry", "signer", "executor", "scheduler")


class Container:
    def __init__(self, daemon: Daemon, name: str, args: list[str]) -> None:
        self.daemon, self.name = daemon, name
        self.proc = subprocess.Popen(args, env=daemon.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def logs(self) -> str:
        return self.daemon.docker("logs", self.name).stdout[-4000:]

    def exited(self) -> str | None:
        """A `broken` check for waits: the container's client (`docker run`) has exited."""
        rc = self.proc.poll()
        return None if rc is None else f"docker run exited with {rc}"

    def output(self) -> str:
        """What the container printed: from `docker logs` while it exists, else from its client."""
        if self.proc.poll() is not None and self.proc.stdout:
            return self.proc.stdout.read().decode(errors="replace")[-4000:]
        return self.logs()

    def stop(self) -> None:
        self.daemon.docker("stop", "-t", "10", self.name)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def chain(daemon: Daemon, tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[str, float]]]:
    """The four services from their images, each on a free loopback port: id -> (address, cold start s)."""
    root = tmp_path_factory.mktemp("images")
    started: dict[str, tuple[str, float]] = {}
    containers: list[Container] = []
    try:
        for service in SERVICES:
            addr = f"127.0.0.1:{free_port()}"
            data = root / service
            data.mkdir()
            hand_over([data])
            env = {
                "AF_SERVICE_ID": service,
                "AF_LISTEN_ADDR": addr,
                "AF_METRICS_ADDR": f"127.0.0.1:{free_port()}",
                "AF_DATA_DIR": str(data),
                "AF_SHUTDOWN_GRACE_SECONDS": "1",
            }
            if service == "executor":
                env |= {"AF_REGISTRY_ADDR": started["registry"][0], "AF_SIGNER_ADDR": started["signer"][0]}
            if service == "scheduler":
                env |= {"AF_EXECUTOR_ADDRS": started["executor"][0]}
            name = f"af-{SESSION_LABEL}-{service}"
            args = run_args(
                f"agentfactory/{service}:{tag}",
                name,
                ["python", "-m", f"services.{service}"],
                env_names=[],
                writable_mounts=[data],
                label=SESSION_LABEL,
            )
            # Values inline (-e K=V): this test has no supervisord to hand them down.
            at = args.index("--network")
            args[at:at] = [x for k, v in env.items() for x in ("-e", f"{k}={v}")]
            t0 = time.monotonic()
            container = Container(daemon, name, args)
            containers.append(container)
            # No time bound (pytest's timeout ends a hang), but a service that dies at start-up (say an
            # import missing from images/requirements-runtime.txt) fails here at once with its own log.
            try:
                wait_serving(addr, broken=container.exited)
            except NotServing:
                pytest.fail(f"{service} image never SERVING on {addr}:\n{container.output()}")
            started[service] = (addr, time.monotonic() - t0)
            print(f"{service}: SERVING {started[service][1]:.2f} s after docker run")
        yield started
    finally:
        for c in reversed(containers):
            c.stop()


@pytest.mark.parametrize("service", SERVICES)
def test_service_image_reaches_serving(chain: dict[str, tuple[str, float]], service: str) -> None:
    addr, _ = chain[service]
    wait_serving(addr)  # still SERVING (the chain fixture waited for it); no time bound


def test_images_run_as_65532_without_pip_or_compilers(daemon: Daemon, tag: str) -> None:
    for name in (*SERVICES, "envoy"):
        config = json.loads(daemon.docker("image", "inspect", f"agentfactory/{name}:{tag}").stdout)[0]["Config"]
        assert config["User"] == "65532:65532", (name, config["User"])
    probe = "for t in pip pip3 gcc cc clang make apt-get; do command -v $t; done; id -u; ls build/wasm"
    out = daemon.docker(
        "run",
        "--rm",
        "--network",
        "host",
        "--read-only",
        "--label",
        f"agentfactory.run={SESSION_LABEL}",
        "--entrypoint",
        "sh",
        f"agentfactory/registry:{tag}",
        "-c",
        probe,
    ).stdout.split()
    # apt-get comes with Debian's base (dpkg is part of minbase); it cannot run as 65532 anyway.
    assert [t for t in out if t.startswith("/") and not t.endswith("apt-get")] == [], out
    assert "65532" in out
    assert {"echo-upper.wasm", "prime-sieve.wasm", "text-stats.wasm"} <= set(out), out


def test_envoy_image_serves_its_admin_ready(daemon: Daemon, tag: str, tmp_path: Path) -> None:
    admin = free_port()
    config = tmp_path / "envoy.yaml"
    config.write_text(
        json.dumps({"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}}})
    )
    hand_over([tmp_path])
    name = f"af-{SESSION_LABEL}-envoy"
    args = run_args(
        f"agentfactory/envoy:{tag}",
        name,
        ["-c", str(config), "--disable-hot-restart"],
        read_only_mounts=[tmp_path],
        label=SESSION_LABEL,
    )
    t0 = time.monotonic()
    container = Container(daemon, name, args)
    try:

        def live() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=5) as reply:
                    return reply.read().decode().strip() == "LIVE"
            except OSError:
                return False

        # No time bound (pytest's timeout ends a hang); at once a failure, with its log, if it exits.
        broken = lambda: (why := container.exited()) and f"{why}:\n{container.output()}"  # noqa: E731
        eventually(live, "the envoy image's admin LIVE", broken=broken, interval=0.1)
        print(f"envoy: LIVE {time.monotonic() - t0:.2f} s after docker run")
    finally:
        container.stop()
