"""The process entry shared by the services: one environment read, a bad setting as one stderr line and
exit code 2, the service's result as the exit code."""

from __future__ import annotations

import asyncio

import pytest

from services.common.app import EXIT_BAD_SETTING, run_service
from services.common.config import Env


class PolicyProblem(Exception):
    """Stands for a service's own setting error (the registry's and executor's PolicyError)."""


def configure(env: Env) -> int:
    return env.int("AF_TEST_PORT", 7000)


async def serve(port: int) -> int | None:
    return None if port == 7000 else port % 256


def test_the_service_runs_with_its_settings_and_its_result_is_the_exit_code() -> None:
    assert run_service("svc", configure, serve, environ={}) == 0
    assert run_service("svc", configure, serve, environ={"AF_TEST_PORT": "7001"}) == 7001 % 256


@pytest.mark.parametrize(
    "environ",
    [{"AF_TEST_PORT": "seven"}, {"AF_EVENT_LOOP": "trio"}],
    ids=["service setting", "event loop setting"],
)
def test_a_bad_setting_is_one_line_and_exit_code_2(environ: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[int] = []

    async def must_not_run(port: int) -> None:
        ran.append(port)

    assert run_service("svc", configure, must_not_run, environ=environ) == EXIT_BAD_SETTING
    err = capsys.readouterr().err
    assert err.startswith("svc: configuration error: ") and err.count("\n") == 1, err
    assert ran == []


def test_a_services_own_setting_errors_count_and_multiline_messages_become_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def bad_policy(env: Env) -> int:
        raise PolicyProblem("policy.yaml:\n  line 3: tools is not a list")

    assert run_service("svc", bad_policy, serve, setting_errors=(PolicyProblem,), environ={}) == EXIT_BAD_SETTING
    assert capsys.readouterr().err == "svc: configuration error: policy.yaml: line 3: tools is not a list\n"


def test_other_errors_are_not_setting_errors() -> None:
    def broken(env: Env) -> int:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        run_service("svc", broken, serve, environ={})


def test_the_loop_is_the_configured_one() -> None:
    seen: list[str] = []

    async def which(_: int) -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    run_service("svc", configure, which, environ={"AF_EVENT_LOOP": "asyncio"})
    run_service("svc", configure, which, environ={})
    assert seen[0].startswith("asyncio") and seen[1].startswith("uvloop")
