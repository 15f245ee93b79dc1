-- 002 ingest: the ledger of source files (the exactly-once record), its audit trail and quarantine.
-- Source paths may contain patient names: no analyst role is granted anything in this schema.
CREATE SCHEMA IF NOT EXISTS ingest;

CREATE TABLE ingest.source_files (
    id              bigserial PRIMARY KEY,
    path            text NOT NULL,
    size            bigint NOT NULL,
    mtime           timestamptz NOT NULL,
    sha256          text NOT NULL,
    state           text NOT NULL DEFAULT 'discovered'
                    CHECK (state IN ('discovered', 'processing', 'catalogued', 'quarantined', 'duplicate', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    error_reason    text,                          -- a machine-readable code, never patient data
    lease_owner     text,
    lease_until     timestamptz,
    sop_instance_uid text,                         -- pseudonymous, once catalogued
    duplicate_of    bigint REFERENCES ingest.source_files (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (path, size, mtime, sha256)
);
CREATE INDEX source_files_sha256_idx ON ingest.source_files (sha256);
CREATE INDEX source_files_state_idx ON ingest.source_files (state, updated_at);

CREATE TABLE ingest.stage_events (
    id              bigserial PRIMARY KEY,
    source_file_id  bigint NOT NULL REFERENCES ingest.source_files (id),
    stage           text NOT NULL,                 -- e.g. claim, parse, deidentify, normalize, store, catalog
    from_state      text,
    to_state        text,
    detail          text,                          -- a machine-readable code
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stage_events_source_idx ON ingest.stage_events (source_file_id, at);

CREATE TABLE ingest.quarantine (
    id              bigserial PRIMARY KEY,
    source_file_id  bigint NOT NULL REFERENCES ingest.source_files (id),
    reason          text NOT NULL,                 -- a machine-readable code
    detail          text,
    object_key      text,                          -- where the quarantined copy was stored, if anywhere
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quarantine_source_idx ON ingest.quarantine (source_file_id);
