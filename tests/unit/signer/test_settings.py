"""Signer settings: defaults, and no secret defaults for the vault backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.config import ConfigError, Env
from services.signer.settings import SignerSettings


def test_defaults_are_local_and_embedded() -> None:
    settings = SignerSettings.from_env(Env({}))
    assert (settings.backend, settings.key_name, settings.data_dir) == ("local", "templates", Path("var/signer"))
    assert settings.vault is None


def test_vault_without_token_fails_with_a_clear_message() -> None:
    with pytest.raises(ConfigError, match="AF_VAULT_TOKEN or AF_VAULT_TOKEN_FILE"):
        SignerSettings.from_env(Env({"AF_SIGNER_BACKEND": "vault", "AF_VAULT_ADDR": "http://127.0.0.1:8200"}))


def test_vault_without_address_fails() -> None:
    with pytest.raises(ConfigError, match="AF_VAULT_ADDR"):
        SignerSettings.from_env(Env({"AF_SIGNER_BACKEND": "vault", "AF_VAULT_TOKEN": "t"}))


def test_vault_token_from_file_is_not_in_repr(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s.secret-token\n")
    settings = SignerSettings.from_env(
        Env(
            {
                "AF_SIGNER_BACKEND": "vault",
                "AF_VAULT_ADDR": "http://127.0.0.1:8200/",
                "AF_VAULT_TOKEN_FILE": str(token_file),
            }
        )
    )
    assert settings.vault is not None
    assert settings.vault.token == "s.secret-token"
    assert (settings.vault.addr, settings.vault.mount) == ("http://127.0.0.1:8200", "transit")
    assert "secret-token" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AF_SIGNER_BACKEND": "hsm"}, "not one of local, vault"),
        ({"AF_SIGNER_KEY_NAME": "../keys"}, "AF_SIGNER_KEY_NAME"),
        (
            {
                "AF_SIGNER_BACKEND": "vault",
                "AF_VAULT_ADDR": "http://x",
                "AF_VAULT_TOKEN": "a",
                "AF_VAULT_TOKEN_FILE": "b",
            },
            "not both",
        ),
        (
            {"AF_SIGNER_BACKEND": "vault", "AF_VAULT_ADDR": "http://x", "AF_VAULT_TOKEN_FILE": "/nonexistent"},
            "cannot be read",
        ),
    ],
)
def test_bad_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SignerSettings.from_env(Env(env))
