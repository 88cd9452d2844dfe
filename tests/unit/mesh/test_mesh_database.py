"""The topology's local PostgreSQL: run only when asked (`make run BACKEND=postgres`), with one role and
database per service that keeps state there; the default `make run` has no database process."""

from __future__ import annotations

import configparser
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh import DEFAULT_TOPOLOGY
from mesh.pglocal import service_dsn, service_role
from mesh.supervisor import render_conf
from mesh.topology import TopologyError, load


def _raw() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(DEFAULT_TOPOLOGY.read_text()))


def _programs(conf: Path) -> dict[str, dict[str, str]]:
    parser = configparser.RawConfigParser()
    parser.read(conf)
    return {s.removeprefix("program:"): dict(parser[s]) for s in parser.sections() if s.startswith("program:")}


def test_the_repository_topology_names_a_database_for_the_registry_and_the_scheduler() -> None:
    topo = load(DEFAULT_TOPOLOGY)
    assert topo.database is not None
    assert topo.database.services == ("registry", "scheduler")


def test_a_database_port_is_claimed_like_any_other() -> None:
    raw = _raw()
    raw["database"]["port"] = raw["gateway"]["listen"]["port"]
    with pytest.raises(TopologyError, match=r"database\.port"):
        load(raw)


@pytest.mark.parametrize("service", ["executor", "nosuch"])
def test_only_services_with_a_postgresql_store_get_a_database(service: str) -> None:
    raw = _raw()
    raw["database"]["services"] = ["registry", service]
    with pytest.raises(TopologyError, match=r"database\.services"):
        load(raw)


def test_without_a_database_section_the_topology_loads_and_postgres_is_refused(tmp_path: Path) -> None:
    raw = _raw()
    del raw["database"]
    topo = load(raw)
    assert topo.database is None
    with pytest.raises(ValueError, match="database"):
        render_conf(topo, out_dir=tmp_path / "out", var_dir=tmp_path / "var", postgres_dir=tmp_path / "pg")


def test_the_default_run_has_no_database_process_and_no_dsn(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    programs = _programs(render_conf(load(DEFAULT_TOPOLOGY), out_dir=tmp_path / "out", var_dir=tmp_path / "var"))
    assert "postgres" not in programs
    assert not any("AF_DATABASE_URL" in p.get("environment", "") for p in programs.values())


def test_the_postgres_backend_runs_the_database_first_and_points_each_service_at_its_own(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    topo = load(DEFAULT_TOPOLOGY)
    pg = tmp_path / "pg"
    programs = _programs(render_conf(topo, out_dir=tmp_path / "out", var_dir=tmp_path / "var", postgres_dir=pg))
    db = programs["postgres"]
    assert db["command"].endswith(f"-m mesh.pglocal serve {pg.resolve()} 7600 registry scheduler")
    assert db["stopsignal"] == "INT"  # a fast shutdown: SIGTERM would wait for every pooled connection
    assert int(db["priority"]) < min(int(programs[i.id]["priority"]) for i in topo.instances())
    for inst in topo.instances():
        env = programs[inst.id]["environment"]
        if inst.service in ("registry", "scheduler"):
            dsn = service_dsn(pg.resolve(), 7600, inst.service)
            assert f'AF_DATABASE_URL="{dsn}"' in env, env
        else:
            assert "AF_DATABASE_URL" not in env, inst.id
    # Both scheduler colors share one journal; no password in the rendered config.
    assert service_dsn(pg, 7600, "scheduler") == (
        f"postgresql://af_scheduler@127.0.0.1:7600/af_scheduler?passfile={pg / 'scheduler.pgpass'}"
    )


@pytest.mark.parametrize("bad", ["", "Registry", "a;drop", "x" * 60, "1abc"])
def test_a_role_name_is_never_built_from_anything_but_a_plain_service_name(bad: str) -> None:
    with pytest.raises(ValueError, match="plain"):
        service_role(bad)
