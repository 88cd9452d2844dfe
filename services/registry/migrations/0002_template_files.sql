-- Read-only files a template ships (manifest `files`): their bytes are blobs in `modules`/`module_chunks`
-- (content-addressed, stored once), referenced from here so FetchModule serves them and nothing drops them.
CREATE TABLE template_files (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL REFERENCES modules (sha256),
    PRIMARY KEY (name, version, path),
    FOREIGN KEY (name, version) REFERENCES templates (name, version)
);
CREATE INDEX template_files_blob ON template_files (sha256);
