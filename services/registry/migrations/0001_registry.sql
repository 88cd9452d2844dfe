-- The registry on PostgreSQL (services/registry/store_pg.py), shared by every registry replica.
-- Manifests are stored as today's files are: the canonical (signed) bytes, zstd-compressed, with their
-- SHA-256. Not jsonb: jsonb re-orders keys and drops duplicates, and the signature covers exact bytes.
CREATE TABLE registry_revision (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    value BIGINT NOT NULL
);
INSERT INTO registry_revision (one, value) VALUES (TRUE, 0);
-- Revisions come from the counter row above, taken FOR UPDATE inside the writing transaction: writers
-- queue on it, so revisions have no gaps and commit in order (a watcher reading "after N" never misses
-- one that commits later with a smaller number).
CREATE TABLE events (
    revision BIGINT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('published', 'deprecated')),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    event_time DOUBLE PRECISION NOT NULL
);
CREATE TABLE modules (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL
);
-- Module bytes in 1 MiB pieces (content-addressed; the policy caps a module's size).
CREATE TABLE module_chunks (
    sha256 TEXT NOT NULL REFERENCES modules (sha256),
    idx INTEGER NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (sha256, idx)
);
CREATE TABLE templates (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    sort_key TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    manifest_zst BYTEA NOT NULL,
    module_sha256 TEXT NOT NULL REFERENCES modules (sha256),
    module_size BIGINT NOT NULL,
    labels_json TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    signature BYTEA NOT NULL,
    key_fingerprint TEXT NOT NULL DEFAULT '',
    deprecated BOOLEAN NOT NULL DEFAULT FALSE,
    deprecation_reason TEXT NOT NULL DEFAULT '',
    revision BIGINT NOT NULL,
    publish_time DOUBLE PRECISION NOT NULL,
    update_time DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX templates_order ON templates (name, sort_key DESC, version DESC);
CREATE INDEX templates_module ON templates (module_sha256);
CREATE TABLE labels (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, version, key),
    FOREIGN KEY (name, version) REFERENCES templates (name, version)
);
CREATE INDEX labels_kv ON labels (key, value);
CREATE TABLE signing_keys (
    key_id TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    public_key_pem TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    first_seen DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (key_id, key_version)
);
