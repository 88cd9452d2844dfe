"""The process entry shared by the services: one environment read, a bad setting as one stderr line and
exit code 2, a service that cannot start as one stderr line and exit code 1, then the lifecycle."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.common import dir_claim
from services.common.app import EXIT_BAD_SETTING, CannotStart, Service, run_service
from services.common.config import Env
from services.common.lifecycle import EXIT_FAILED, App
from services.common.server import ServerSettings
from services.common.telemetry import Telemetry


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """run_service sets up the process's logging (JSON lines on stderr); give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


class PolicyProblem(Exception):
    """Stands for a service's own setting error (the registry's and executor's PolicyError)."""


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    answer: int

    @classmethod
    def from_env(cls, env: Env) -> Settings:
        return cls(ServerSettings.from_env(env, "svc", 7000), env.int("AF_TEST_ANSWER", 42))


async def must_not_build(settings: Settings, telemetry: Telemetry) -> App:
    raise AssertionError("built despite a bad setting")


@pytest.mark.parametrize(
    "environ",
    [
        {"AF_TEST_ANSWER": "seven"},
        {"AF_EVENT_LOOP": "trio"},
        {"AF_LOG_LEVEL": "loud"},
        {"AF_LISTEN_ADDR": "0.0.0.0:7000"},
        {"AF_METRICS_ADDR": "127.0.0.1:metrics"},
        {"AF_SHUTDOWN_GRACE_SECONDS": "-1"},
    ],
    ids=["service setting", "event loop", "log level", "listen address", "metrics address", "grace"],
)
def test_a_bad_setting_is_one_line_and_exit_code_2(environ: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_service(Service("svc", Settings.from_env, must_not_build), environ) == EXIT_BAD_SETTING
    err = capsys.readouterr().err
    assert err.startswith("svc: configuration error: AF_") and err.count("\n") == 1, err


def test_a_services_own_setting_errors_count_and_multiline_messages_become_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def bad_policy(env: Env) -> Settings:
        raise PolicyProblem("policy.yaml:\n  line 3: tools is not a list")

    service = Service("svc", bad_policy, must_not_build, setting_errors=(PolicyProblem,))
    assert run_service(service, {}) == EXIT_BAD_SETTING
    assert capsys.readouterr().err == "svc: configuration error: policy.yaml: line 3: tools is not a list\n"


def test_other_errors_are_not_setting_errors() -> None:
    def broken(env: Env) -> Settings:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        run_service(Service("svc", broken, must_not_build), {})


def test_a_service_that_cannot_start_says_why_in_one_line_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[int, bool, str]] = []

    async def cannot(settings: Settings, telemetry: Telemetry) -> App:
        seen.append((settings.answer, telemetry.on, type(asyncio.get_running_loop()).__module__))
        raise CannotStart("the key directory\nis shared")

    assert run_service(Service("svc", Settings.from_env, cannot), {"AF_EVENT_LOOP": "asyncio"}) == EXIT_FAILED
    assert capsys.readouterr().err.endswith("svc: cannot start: the key directory is shared\n")
    # build got the parsed settings, tracing off (no AF_OTLP_ENDPOINT) and ran on the configured loop.
    assert seen == [(42, False, "asyncio.unix_events")]


@dataclass(frozen=True)
class DirSettings(Settings):
    data_dir: Path = Path()


def test_the_own_dir_is_claimed_for_the_build_and_released_after(tmp_path: Path) -> None:
    """While build runs the directory is held (a second claim is refused, naming this pid); after the
    process's service ends it is free again."""
    seen: list[str] = []

    async def build(settings: DirSettings, telemetry: Telemetry) -> App:
        with pytest.raises(dir_claim.DirInUse) as held:
            dir_claim.claim(settings.data_dir)
        seen.append(str(held.value))
        raise CannotStart("stop here")

    def settings(env: Env) -> DirSettings:
        base = Settings.from_env(env)
        return DirSettings(base.server, base.answer, tmp_path / "data")

    service = Service("svc", settings, build, own_dir=lambda s: s.data_dir)
    assert run_service(service, {}) == EXIT_FAILED
    assert seen == [f"process {os.getpid()} is using {tmp_path / 'data'}"]
    dir_claim.claim(tmp_path / "data").release()  # released


def test_a_held_own_dir_is_one_line_and_exit_1_before_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holder = dir_claim.claim(tmp_path)
    try:
        service = Service("svc", Settings.from_env, must_not_build, own_dir=lambda s: tmp_path)
        assert run_service(service, {}) == EXIT_FAILED
    finally:
        holder.release()
    assert capsys.readouterr().err.endswith(
        f"svc: cannot start: process {os.getpid()} is using {tmp_path}; "
        "each svc process needs a data directory of its own (AF_DATA_DIR)\n"
    )


def test_an_unusable_own_dir_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("a file where the data directory goes")
    service = Service("svc", Settings.from_env, must_not_build, own_dir=lambda s: tmp_path / "file")
    assert run_service(service, {}) == EXIT_FAILED
    expected = f"svc: cannot start: cannot use {tmp_path / 'file'} as the data directory: File exists\n"
    assert capsys.readouterr().err.endswith(expected)
