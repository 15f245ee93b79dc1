-- 012 pixel text audit: what OCR found and blanked in an instance's pixels under the profile's burned-in text
-- policy (redact_sensitive, redact_all_text), one row per instance that was read. Never the text read: the policy,
-- the outcome, how many frames and words were read, and each blanked box with what it held (name, id, date,
-- accession, institution, other, pattern, text). A re-sent instance replaces its row.
CREATE TABLE imaging.pixel_text_audit (
    sop_instance_uid  text PRIMARY KEY REFERENCES imaging.instances (sop_instance_uid) ON DELETE CASCADE,
    action            text NOT NULL CHECK (action IN ('reject', 'redact_sensitive', 'redact_all_text', 'pass')),
    outcome           text NOT NULL CHECK (outcome IN ('clean', 'redacted', 'unreadable')),
    unreadable_reason text,
    frames_checked    integer NOT NULL CHECK (frames_checked >= 0),
    words_read        integer NOT NULL CHECK (words_read >= 0),
    box_count         integer NOT NULL CHECK (box_count >= 0),
    -- boxes per category, e.g. {"name": 2, "date": 1}
    categories        jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- [{"frame": 0, "x": 4, "y": 3, "width": 120, "height": 18, "category": "name"}, ...]
    boxes             jsonb NOT NULL DEFAULT '[]'::jsonb,
    engine            text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pixel_text_audit_outcome_idx ON imaging.pixel_text_audit (outcome);
GRANT SELECT, INSERT, UPDATE, DELETE ON imaging.pixel_text_audit TO dicom_etl_daemon;
GRANT SELECT ON imaging.pixel_text_audit TO dicom_etl_worker, analyst;
