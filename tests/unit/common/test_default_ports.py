"""Each service's code defaults name the ports mesh/topology.yaml gives it (its first instance), and
its upstreams' defaults their apps' ports, so a service run by hand without settings lands where the
README's port table and `make run` put it, and finds its upstreams there."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh import topology
from services.common.app import HasServer
from services.common.config import Env
from services.executor.settings import ExecutorSettings
from services.registry.settings import RegistrySettings
from services.scheduler.settings import SchedulerSettings
from services.signer.settings import SignerSettings

TOPOLOGY = topology.load(Path(__file__).resolve().parents[3] / "mesh" / "topology.yaml")


def _app_addr(service: str) -> str:
    return TOPOLOGY.services[service].instances[0].app_addr


@pytest.mark.parametrize(
    ("service", "settings"),
    [
        ("registry", RegistrySettings.from_env(Env({}))),
        ("signer", SignerSettings.from_env(Env({}))),
        ("executor", ExecutorSettings.from_env(Env({}))),
        ("scheduler", SchedulerSettings.from_env(Env({}))),
    ],
    ids=["registry", "signer", "executor", "scheduler"],
)
def test_a_service_listens_by_default_where_the_topology_puts_it(service: str, settings: HasServer) -> None:
    assert settings.server.listen_addr == _app_addr(service)


def test_upstream_defaults_are_the_upstreams_own_ports() -> None:
    assert RegistrySettings.from_env(Env({})).signer_addr == _app_addr("signer")
    executor = ExecutorSettings.from_env(Env({}))
    assert (executor.registry_addr, executor.signer_addr) == (_app_addr("registry"), _app_addr("signer"))
    scheduler = SchedulerSettings.from_env(Env({}))
    assert (scheduler.registry_addr, scheduler.executor_addrs) == (_app_addr("registry"), (_app_addr("executor"),))
