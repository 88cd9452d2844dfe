from __future__ import annotations

import pytest

from services.common.config import ConfigError, Env, loopback_addr


def test_typed_reads_and_errors_name_the_variable() -> None:
    env = Env({"A": "3", "B": "true", "C": "x, y,,z", "BAD": "three"})
    assert env.int("A", 1) == 3
    assert env.int("MISSING", 7) == 7
    assert env.bool("B", False) is True
    assert env.list("C") == ["x", "y", "z"]
    with pytest.raises(ConfigError, match="BAD"):
        env.int("BAD", 1)
    with pytest.raises(ConfigError, match="REQUIRED"):
        env.str("REQUIRED")


@pytest.mark.parametrize("addr", ["0.0.0.0:80", "10.0.0.1:80", "127.0.0.1", "localhost:x"])
def test_apps_listen_on_loopback_only(addr: str) -> None:
    with pytest.raises(ConfigError):
        loopback_addr(addr, "AF_LISTEN_ADDR")
    assert loopback_addr("127.0.0.1:7110", "X") == "127.0.0.1:7110"
