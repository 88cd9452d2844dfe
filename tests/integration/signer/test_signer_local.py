"""Local backend specifics, through real processes: refusing unsafe key storage at start-up."""

from __future__ import annotations

import os
from pathlib import Path

from tests.harness import ServiceProcess

from .conftest import StartSigner, run_until_exit


def test_refuses_to_start_when_a_key_file_is_group_readable(start_signer: StartSigner, tmp_path: Path) -> None:
    start_signer({"AF_SIGNER_BACKEND": "local"}).stop()
    key = tmp_path / "signer-data" / "keys" / "templates" / "v1.pem"
    os.chmod(key, 0o640)
    result = run_until_exit(tmp_path, {"AF_SIGNER_BACKEND": "local"})
    assert result.returncode == 1
    assert f"chmod 600 {key}" in result.stderr
    assert "group or other users can read the private signing keys" in result.stderr


def test_a_second_signer_on_the_same_key_directory_is_refused(signer_process: ServiceProcess, tmp_path: Path) -> None:
    result = run_until_exit(tmp_path, {"AF_SIGNER_BACKEND": "local"})
    assert result.returncode == 1
    # The service kit's claim of AF_DATA_DIR (its key ledger and keys) refuses it first, naming the holder.
    assert f"process {signer_process.proc.pid} is using" in result.stderr, result.stderr
    assert "each signer process needs a data directory of its own" in result.stderr
    assert signer_process.alive()


def test_vault_backend_without_token_refuses_to_start(tmp_path: Path) -> None:
    env = {"AF_SIGNER_BACKEND": "vault", "AF_VAULT_ADDR": "http://127.0.0.1:1", "AF_VAULT_TOKEN": ""}
    result = run_until_exit(tmp_path, env)
    assert result.returncode == 2
    assert "needs a Vault token: set AF_VAULT_TOKEN or AF_VAULT_TOKEN_FILE" in result.stderr
