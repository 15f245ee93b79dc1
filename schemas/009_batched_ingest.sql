-- 009 batched ingest and conflicting SOP Instance UIDs.
-- The daemon now claims and catalogues files in batches; a file whose SOP Instance UID is already catalogued
-- is compared by content (SHA-256 over the pixel data as stored and the pseudonymous identifying attributes):
-- the same content is a duplicate, other content a conflict handled by the configured policy and recorded in
-- ingest.uid_conflicts. Rows catalogued before this migration have no content hash: a file re-sent for one of
-- them updates it in place, as before.
ALTER TABLE imaging.instances ADD COLUMN content_sha256 text;

CREATE TABLE ingest.uid_conflicts (
    id                      bigserial PRIMARY KEY,
    source_file_id          bigint NOT NULL REFERENCES ingest.source_files (id),
    sop_instance_uid        text NOT NULL,         -- pseudonymous: the UID both files claim
    resolution              text NOT NULL CHECK (resolution IN ('quarantined', 'kept_both', 'replaced')),
    existing_content_sha256 text,                  -- the catalogued instance's content
    existing_file_sha256    text,                  -- its de-identified file, when still catalogued
    incoming_content_sha256 text NOT NULL,         -- the later file's content
    incoming_file_sha256    text,                  -- its de-identified file
    new_sop_instance_uid    text,                  -- kept_both: the UID the later file got
    created_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uid_conflicts_sop_idx ON ingest.uid_conflicts (sop_instance_uid);
CREATE INDEX uid_conflicts_source_idx ON ingest.uid_conflicts (source_file_id);

-- Claims are taken in batches. A daemon killed mid-batch interrupts every file of the batch, which says nothing
-- about any one of them: claim_batch is the size of the group a claimed file was being processed in (0: claimed,
-- not started yet). An interrupted file is counted an interruption only when it was processed alone; one
-- interrupted in a group of n is taken again in a group of n/2, so a file that takes its daemon down is isolated
-- within a few restarts and then counted, as before, while the others of its batch go through.
ALTER TABLE ingest.source_files ADD COLUMN claim_batch integer NOT NULL DEFAULT 1 CHECK (claim_batch >= 0);

-- Duplicates by content name the ledger row that catalogued the instance.
CREATE INDEX source_files_sop_idx ON ingest.source_files (sop_instance_uid) WHERE sop_instance_uid IS NOT NULL;

-- Objects nothing refers to (a duplicate's, a conflict's), recorded in the transaction that decided so and
-- removed from the store after it commits; a daemon killed in between removes them at its next start.
CREATE TABLE ingest.object_deletions (
    key         text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE, DELETE ON ingest.object_deletions TO dicom_etl_daemon;
GRANT SELECT, INSERT, UPDATE ON ingest.uid_conflicts TO dicom_etl_daemon;
GRANT USAGE, SELECT ON SEQUENCE ingest.uid_conflicts_id_seq TO dicom_etl_daemon;
