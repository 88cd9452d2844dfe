"""Check every stored template of a registry store, whichever adapter holds it: its manifest's digest (the
store checks it on read), its signature against the public keys the store recorded (revoked versions too:
the question is whether the bytes are intact), and its module's SHA-256 and size. The verification step
of the PostgreSQL restore (`pg_backup restore`, then this); it works on the embedded store as well.

    AF_DATABASE_URL=postgresql://... python -m services.registry.verify_store
    AF_DATA_DIR=var/registry          python -m services.registry.verify_store
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from services.common.config import Env
from services.common.errors import AgentFactoryError
from services.registry.ports import TemplateStore
from services.templates.signature import Keyring, UnknownKeyVersion

PAGE = 256


def verify_store(store: TemplateStore) -> dict[str, Any]:
    """{"templates": n, "modules": m, "problems": [...], "revoked": [...]}; no problems = intact."""
    recorded = store.signing_keys()
    ring = Keyring(key for key, _ in recorded)
    revoked_versions = {(key.key_id, key.key_version) for key, revoked in recorded if revoked}
    problems: list[str] = []
    revoked: list[str] = []
    modules: dict[str, bool] = {}
    count = 0
    after: tuple[str, str] | None = None
    while refs := store.all_refs(after, PAGE):
        for name, version in refs:
            count += 1
            ref = f"{name}@{version}"
            try:
                template = store.get(name, version)
                if template is None:
                    problems.append(f"{ref}: listed but not readable")
                    continue
                ring.verify(template.canonical_manifest, template.signature)
            except UnknownKeyVersion:
                problems.append(f"{ref}: its signing key version's public key was never recorded")
                continue
            except AgentFactoryError as exc:
                problems.append(f"{ref}: {exc.message}")
                continue
            sig = template.signature
            if (sig.key_id, sig.key_version) in revoked_versions:
                revoked.append(f"{ref} ({sig.key_id} v{sig.key_version})")
            digest = template.manifest.module_sha256
            if digest not in modules:
                modules[digest] = _module_ok(store, digest, template.module_size, ref, problems)
        after = refs[-1]
    return {"templates": count, "modules": len(modules), "problems": problems, "revoked": revoked}


def _module_ok(store: TemplateStore, digest: str, size: int, ref: str, problems: list[str]) -> bool:
    try:
        with store.open_blob(digest) as handle:
            data = handle.read()
    except AgentFactoryError as exc:
        problems.append(f"{ref}: module {digest}: {exc.message}")
        return False
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest or len(data) != size:
        problems.append(f"{ref}: module {digest} holds other bytes (sha256 {actual}, {len(data)} bytes)")
        return False
    return True


def main() -> int:
    env = Env()
    dsn = env.optional("AF_DATABASE_URL")
    if dsn:
        from services.registry.store_pg import PgRegistryStore

        store: TemplateStore = PgRegistryStore(dsn)
    else:
        from services.registry.storage import RegistryStore

        store = RegistryStore(env.path("AF_DATA_DIR", "var/registry"))
    try:
        result = verify_store(store)
    finally:
        store.close()
    print(json.dumps(result, indent=2))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
