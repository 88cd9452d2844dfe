"""Executor settings: the per-run scratch cap and the compile budget default to what the sandbox used as
constants, are validated (a bad value is a ConfigError naming the variable: one stderr line and exit 2
through services/common/app.py) and reach the Sandbox explicitly."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.config import ConfigError, Env
from services.executor.sandbox import EngineSettings, Sandbox, ScratchSettings
from services.executor.sandbox.compile import CompileBudget
from services.executor.sandbox.scratch import MAX_BYTES, MAX_ENTRIES
from services.executor.settings import ExecutorSettings


def test_defaults_are_todays_caps_and_budget() -> None:
    settings = ExecutorSettings.from_env(Env({"AF_DATA_DIR": "/srv/executor"}))
    assert settings.scratch == ScratchSettings(MAX_BYTES, MAX_ENTRIES, Path("/srv/executor/runs"))
    assert (settings.scratch.max_bytes, settings.scratch.max_entries) == (16 * 1024 * 1024, 1024)
    assert settings.compile_budget == CompileBudget(seconds=30.0, cpu_seconds=20, memory_bytes=2 * 1024**3)
    assert settings.run_root == Path("/srv/executor/runs")
    assert settings.max_descriptors == 256


def test_each_setting_is_read() -> None:
    settings = ExecutorSettings.from_env(
        Env(
            {
                "AF_EXECUTOR_SCRATCH_BYTES": "262144",
                "AF_EXECUTOR_SCRATCH_ENTRIES": "64",
                "AF_EXECUTOR_COMPILE_SECONDS": "2.5",
                "AF_EXECUTOR_COMPILE_CPU_SECONDS": "3",
                "AF_EXECUTOR_COMPILE_MEMORY_BYTES": str(512 * 1024 * 1024),
                "AF_EXECUTOR_MAX_DESCRIPTORS": "32",
            }
        )
    )
    assert (settings.scratch.max_bytes, settings.scratch.max_entries) == (262144, 64)
    assert settings.compile_budget == CompileBudget(seconds=2.5, cpu_seconds=3, memory_bytes=512 * 1024 * 1024)
    assert settings.max_descriptors == 32


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AF_EXECUTOR_SCRATCH_BYTES", "lots"),
        ("AF_EXECUTOR_SCRATCH_BYTES", "-1"),
        ("AF_EXECUTOR_SCRATCH_BYTES", "4096"),  # less than an empty run's `/` and `/scratch` need to be useful
        ("AF_EXECUTOR_SCRATCH_BYTES", str(1 << 50)),
        ("AF_EXECUTOR_SCRATCH_ENTRIES", "1"),
        ("AF_EXECUTOR_SCRATCH_ENTRIES", "1.5"),
        ("AF_EXECUTOR_COMPILE_SECONDS", "0"),
        ("AF_EXECUTOR_COMPILE_SECONDS", "nan"),
        ("AF_EXECUTOR_COMPILE_SECONDS", "inf"),
        ("AF_EXECUTOR_COMPILE_CPU_SECONDS", "0"),
        ("AF_EXECUTOR_COMPILE_MEMORY_BYTES", "1048576"),
        ("AF_EXECUTOR_MAX_DESCRIPTORS", "4"),  # fewer than stdio and the preopens hold
        ("AF_EXECUTOR_MAX_DESCRIPTORS", "1000000"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}") as raised:
        ExecutorSettings.from_env(Env({name: value}))
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 200


def test_the_sandbox_gets_them_explicitly() -> None:
    caps = ScratchSettings(max_bytes=1 << 20, max_entries=10, run_root=Path("/nowhere"))
    budget = CompileBudget(seconds=1.0, cpu_seconds=1, memory_bytes=1 << 30)
    box = Sandbox(EngineSettings(), budget=budget, scratch=caps)
    try:
        assert box.scratch is caps and box.budget is budget
    finally:
        box.close()
