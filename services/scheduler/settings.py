"""Scheduler settings, parsed from the `Env` snapshot the process entry (services/common/app.py) reads once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.common.config import ConfigError, Env
from services.common.server import ServerSettings
from services.scheduler.dispatcher import DispatchSettings
from services.scheduler.retention import RetentionPolicy
from services.scheduler.service import ServiceSettings

DEFAULT_PORT = 7105  # the topology's (mesh/topology.yaml: scheduler-blue)
# The upstreams' own default ports, so the services find each other when run side by side without a mesh.
REGISTRY_DEFAULT_ADDR = "127.0.0.1:7101"
EXECUTOR_DEFAULT_ADDR = "127.0.0.1:7103"


@dataclass(frozen=True)
class SchedulerSettings:
    server: ServerSettings
    data_dir: Path
    registry_addr: str
    executor_addrs: tuple[str, ...]
    journal_synchronous: str
    template_cache_ttl_seconds: float
    service: ServiceSettings
    # Where the other colors' schedulers answer (this scheduler's sidecar) and which colors to ask
    # about agents this one did not create; unset: no peers (one scheduler, or no mesh).
    peers_addr: str | None = None
    peer_colors: tuple[str, ...] = ()
    # PostgreSQL DSN of the journal every replica shares; unset: the embedded SQLite journal in data_dir.
    database_url: str | None = None
    lease_seconds: float = 10.0
    database_pool_size: int = 10

    @classmethod
    def from_env(cls, env: Env) -> SchedulerSettings:
        executors = tuple(env.list("AF_EXECUTOR_ADDRS", [EXECUTOR_DEFAULT_ADDR]))
        if len(set(executors)) != len(executors):
            raise ConfigError(f"AF_EXECUTOR_ADDRS={','.join(executors)!r} lists an address twice")
        sync = env.str("AF_JOURNAL_SYNCHRONOUS", "FULL").upper()
        if sync not in ("FULL", "EXTRA", "NORMAL"):
            raise ConfigError(f"AF_JOURNAL_SYNCHRONOUS={sync!r} must be FULL, EXTRA or NORMAL")
        lease = env.float("AF_SCHEDULER_LEASE_SECONDS", 10.0)
        if lease < 1:
            raise ConfigError(f"AF_SCHEDULER_LEASE_SECONDS={lease} must be at least 1")
        dispatch = DispatchSettings(
            workers=_positive(env, "AF_MAX_DISPATCHES", 64),
            max_attempts=_positive(env, "AF_MAX_ATTEMPTS", 3),
            dispatch_wait_seconds=env.float("AF_DISPATCH_WAIT_SECONDS", 30.0),
            run_slack_seconds=env.float("AF_RUN_SLACK_SECONDS", 30.0),
        )
        service = ServiceSettings(
            output_cap_bytes=_positive(env, "AF_OUTPUT_CAP_BYTES", 64 * 1024),
            max_live_agents=_positive(env, "AF_MAX_LIVE_AGENTS", 10_000),
            registry_timeout_seconds=env.float("AF_REGISTRY_TIMEOUT_SECONDS", 2.0),
            dispatch=dispatch,
            retention=RetentionPolicy.from_env(env),
            # Renew well inside the lease, so one slow renewal does not hand a live replica's agents away.
            lease_renew_seconds=lease / 3,
        )
        return cls(
            server=ServerSettings.from_env(env, "scheduler", DEFAULT_PORT),
            data_dir=env.path("AF_DATA_DIR", "var/scheduler"),
            registry_addr=env.str("AF_REGISTRY_ADDR", REGISTRY_DEFAULT_ADDR),
            executor_addrs=executors,
            journal_synchronous=sync,
            template_cache_ttl_seconds=env.float("AF_TEMPLATE_CACHE_TTL_SECONDS", 2.0),
            service=service,
            peers_addr=env.optional("AF_SCHEDULER_ADDR"),
            peer_colors=tuple(env.list("AF_PEER_COLORS", [])),
            database_url=env.optional("AF_DATABASE_URL"),
            lease_seconds=lease,
            database_pool_size=_positive(env, "AF_DATABASE_POOL_SIZE", 10),
        )


def _positive(env: Env, name: str, default: int) -> int:
    value = env.int(name, default)
    if value <= 0:
        raise ConfigError(f"{name}={value} must be positive")
    return value
