"""Vault backend specifics against a real OpenBao dev server: transit state, enforcement, outages."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import grpc
import hvac
import hvac.exceptions
import pytest

from agentfactory.signer.v1 import signer_service_pb2 as pb
from tests.harness_openbao import OpenBaoServer

from .conftest import StartSigner, run_until_exit, stub_for

T = 10.0
PAYLOAD = b'{"name":"agent","version":"2.0.0"}'


def vault_env(bao: OpenBaoServer, key: str, **extra: str) -> dict[str, str]:
    return {"AF_SIGNER_BACKEND": "vault", "AF_SIGNER_KEY_NAME": key, **bao.env(), **extra}


def test_creates_a_non_exportable_rsa_key_on_its_own_mount_and_revokes_in_transit_too(
    openbao: OpenBaoServer, start_signer: StartSigner
) -> None:
    key, mount = "k-" + secrets.token_hex(6), "signing-" + secrets.token_hex(4)
    channel, stub = stub_for(start_signer(vault_env(openbao, key, AF_VAULT_TRANSIT_MOUNT=mount)))
    client = hvac.Client(url=openbao.addr, token=openbao.token, timeout=T)
    with channel:
        assert f"{mount}/" in client.sys.list_mounted_secrets_engines()["data"]
        data = client.secrets.transit.read_key(name=key, mount_point=mount)["data"]
        assert (data["type"], data["exportable"]) == ("rsa-2048", False)

        old = stub.Sign(pb.SignRequest(payload=PAYLOAD), timeout=T).signature
        stub.RotateKey(pb.RotateKeyRequest(), timeout=T)
        assert client.secrets.transit.read_key(name=key, mount_point=mount)["data"]["latest_version"] == 2
        stub.SetMinimumKeyVersion(pb.SetMinimumKeyVersionRequest(min_version=2), timeout=T)
        assert client.secrets.transit.read_key(name=key, mount_point=mount)["data"]["min_decryption_version"] == 2

    # Transit itself now refuses the old version, as the signer does.
    with pytest.raises(hvac.exceptions.InvalidRequest, match="too old"):
        client.secrets.transit.verify_signed_data(
            name=key,
            hash_input=base64.b64encode(PAYLOAD).decode(),
            signature=f"vault:v1:{base64.b64encode(old.signature).decode()}",
            hash_algorithm="sha2-256",
            signature_algorithm="pkcs1v15",
            mount_point=mount,
        )


def test_refuses_an_exportable_key(openbao: OpenBaoServer, tmp_path: Path) -> None:
    # Its own transit mount, enabled here: the shared server's default `transit/` exists only once some
    # earlier test's signer has mounted it, so creating the key there made this test depend on the order.
    key, mount = "exp-" + secrets.token_hex(6), "exp-" + secrets.token_hex(4)
    client = hvac.Client(url=openbao.addr, token=openbao.token, timeout=T)
    client.sys.enable_secrets_engine("transit", path=mount)
    client.secrets.transit.create_key(name=key, key_type="rsa-2048", exportable=True, mount_point=mount)
    result = run_until_exit(tmp_path, vault_env(openbao, key, AF_VAULT_TRANSIT_MOUNT=mount))
    assert result.returncode == 1
    assert "is exportable" in result.stderr


def test_refuses_a_rejected_token(openbao: OpenBaoServer, tmp_path: Path) -> None:
    result = run_until_exit(tmp_path, {**vault_env(openbao, "templates"), "AF_VAULT_TOKEN": "not-the-token"})
    assert result.returncode == 1
    assert f"Vault at {openbao.addr} refused the signer's token" in result.stderr


def test_vault_outage_is_unavailable_naming_the_address(start_signer: StartSigner, tmp_path: Path) -> None:
    with OpenBaoServer(tmp_path / "own-openbao") as bao:
        signer = start_signer(vault_env(bao, "templates", AF_VAULT_TIMEOUT_SECONDS="2"))
        channel, stub = stub_for(signer)
        assert stub.Sign(pb.SignRequest(payload=PAYLOAD), timeout=T).signature.key_version == 1
    with channel:
        for call in (
            lambda: stub.Sign(pb.SignRequest(payload=PAYLOAD), timeout=T),
            lambda: stub.RotateKey(pb.RotateKeyRequest(), timeout=T),
            lambda: stub.GetPublicKeys(pb.GetPublicKeysRequest(), timeout=T),
        ):
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert f"Vault at {bao.addr} is unreachable" in info.value.details()
    assert signer.alive()
    signer.stop()  # a signer on the same data directory starts only once this one is gone (dir_claim)
    result = run_until_exit(tmp_path, vault_env(bao, "templates"))
    assert result.returncode == 1 and f"Vault at {bao.addr} is unreachable" in result.stderr


def least_privilege_policy(mount: str, key: str) -> str:
    """The policy services/signer/README.md documents for the signer's token."""
    return f"""
path "sys/mounts" {{ capabilities = ["read"] }}
path "sys/mounts/{mount}" {{ capabilities = ["create", "update"] }}
path "{mount}/keys/{key}" {{ capabilities = ["create", "read", "update"] }}
path "{mount}/keys/{key}/rotate" {{ capabilities = ["update"] }}
path "{mount}/keys/{key}/config" {{ capabilities = ["update"] }}
path "{mount}/sign/{key}" {{ capabilities = ["update"] }}
"""


def test_works_with_a_least_privilege_token(openbao: OpenBaoServer, start_signer: StartSigner) -> None:
    key, mount = "lp-" + secrets.token_hex(6), "lp-" + secrets.token_hex(4)
    root = hvac.Client(url=openbao.addr, token=openbao.token, timeout=T)
    root.sys.create_or_update_policy(name=f"signer-{key}", policy=least_privilege_policy(mount, key))
    token = root.auth.token.create(policies=[f"signer-{key}"], ttl="10m")["auth"]["client_token"]
    env = {**vault_env(openbao, key, AF_VAULT_TRANSIT_MOUNT=mount), "AF_VAULT_TOKEN": token}
    channel, stub = stub_for(start_signer(env))
    with channel:
        old = stub.Sign(pb.SignRequest(payload=PAYLOAD), timeout=T).signature
        stub.RotateKey(pb.RotateKeyRequest(), timeout=T)
        stub.SetMinimumKeyVersion(pb.SetMinimumKeyVersionRequest(min_version=2), timeout=T)
        reply = stub.Verify(pb.VerifyRequest(payload=PAYLOAD, signature=old), timeout=T)
        assert not reply.valid and "revoked" in reply.reason
        assert [k.key_version for k in stub.GetPublicKeys(pb.GetPublicKeysRequest(), timeout=T).keys] == [2]


def test_a_transit_key_lost_with_vaults_storage_is_never_recreated(start_signer: StartSigner, tmp_path: Path) -> None:
    """Issue 10 item 12: a dev server keeps its storage in memory, so a restart is exactly a lost storage."""
    with OpenBaoServer(tmp_path / "first-openbao") as bao:
        first = start_signer(vault_env(bao, "templates"))
        channel, stub = stub_for(first)
        with channel:
            assert stub.Sign(pb.SignRequest(payload=PAYLOAD), timeout=T).signature.key_version == 1
            assert stub.GetPublicKeys(pb.GetPublicKeysRequest(), timeout=T).keys[0].fingerprint_sha256
        first.stop()  # the next signers use its data directory, which it holds while it runs (dir_claim)
    with OpenBaoServer(tmp_path / "second-openbao") as bao:
        # Same data directory (the signer's key ledger), a Vault without the key: refuse, create nothing.
        result = run_until_exit(tmp_path, vault_env(bao, "templates"))
        assert result.returncode == 1, result.stderr
        assert "does not exist, but this signer has signed with it before" in result.stderr, result.stderr
        client = hvac.Client(url=bao.addr, token=bao.token, timeout=T)
        with pytest.raises(hvac.exceptions.InvalidPath):
            client.secrets.transit.read_key(name="templates")
        # Someone re-creates it by hand: "v1" now names another key, and the signer says so.
        client.secrets.transit.create_key(name="templates", key_type="rsa-2048")
        result = run_until_exit(tmp_path, vault_env(bao, "templates"))
        assert result.returncode == 1, result.stderr
        assert "key templates v1 now has public key sha256" in result.stderr, result.stderr
        assert "another one took its name" in result.stderr
