"""What the registry needs from its storage: one port, two adapters — storage.RegistryStore (SQLite, zstd
files and blobs on disk; the embedded default) and store_pg.PgRegistryStore (PostgreSQL, shared by
replicas). Methods block (I/O); the registry calls them from worker threads. Both adapters pass
tests/integration/registry/test_store_contract.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Protocol

from services.registry.storage import EventRow, ListCursor
from services.spec.published import PublishedTemplate
from services.spec.signature import PublicKeyVersion, SignatureRecord


class BlobUpload(Protocol):
    size: int

    @property
    def sha256(self) -> str: ...

    def write(self, chunk: bytes) -> None: ...

    def read_back(self) -> bytes: ...

    def commit(self) -> str: ...

    def discard(self) -> None: ...


class TemplateStore(Protocol):
    # True when other processes write to the same store (their events reach watchers through
    # watch_feed.follow_store, not through this process's hub).
    shared: bool

    def close(self) -> None: ...

    def check_writable(self) -> None: ...

    def sweep(self) -> dict[str, int]: ...

    def new_blob(self) -> BlobUpload: ...

    def blob_size(self, digest: str) -> int: ...

    def blob_referenced(self, digest: str) -> bool: ...

    def open_blob(self, digest: str) -> IO[bytes]: ...

    def get(self, name: str, version: str) -> PublishedTemplate | None: ...

    def latest_version(self, name: str) -> str | None: ...

    def has_name(self, name: str) -> bool: ...

    def list_refs(
        self, name: str, labels: Sequence[tuple[str, str]], include_deprecated: bool, after: ListCursor | None,
        limit: int,
    ) -> list[ListCursor]: ...  # fmt: skip

    def insert(self, template: PublishedTemplate) -> PublishedTemplate:
        """AlreadyExists (store_pg.PublishRace) when another writer stored this name@version first."""
        ...

    def deprecate(self, name: str, version: str, reason: str) -> int | None: ...

    def update_signature(self, name: str, version: str, signature: SignatureRecord) -> int: ...

    def all_refs(self, after: tuple[str, str] | None, limit: int) -> list[tuple[str, str]]: ...

    def record_keys(self, keys: Sequence[PublicKeyVersion], min_versions: dict[str, int]) -> None: ...

    def signing_keys(self) -> list[tuple[PublicKeyVersion, bool]]: ...

    def events_after(self, revision: int, limit: int) -> list[EventRow]: ...

    def current_revision(self) -> int: ...
