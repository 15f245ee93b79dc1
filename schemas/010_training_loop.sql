-- 010 the training loop: radiologists' labels, registered model versions with the files a worker loads, which
-- version of a model is served and which runs beside it as a shadow, and the shadow's diagnoses.

-- Labels per study (pseudonym) and task, imported from CSV keyed by accession number or original study UID,
-- resolved through the vault. Analysts read them by pseudonym only.
CREATE TABLE inference.labels (
    study_uid    text NOT NULL REFERENCES imaging.studies (study_uid),
    task         text NOT NULL,                      -- e.g. 'pneumonia': what the label answers
    label        text NOT NULL,                      -- a class name of that task, e.g. 'normal'
    source       text,                               -- who or what labelled (free text, no patient data)
    import_id    uuid NOT NULL,                      -- one per `labels import` run
    imported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (study_uid, task)
);
CREATE INDEX labels_task_idx ON inference.labels (task, label);

-- A registered model version: the files a worker loads (in the object store) and what registration checked.
ALTER TABLE inference.models
    ADD COLUMN recipe_hash          text,            -- content hash of the input recipe it was trained on
    ADD COLUMN weights_key          text,            -- object key of weights.bin
    ADD COLUMN weights_sha256       text,
    ADD COLUMN metadata_key         text,            -- object key of model_metadata.json
    ADD COLUMN reference_max_abs_diff double precision, -- reference inputs through the Swift forward pass
    ADD COLUMN registered_at        timestamptz;

-- Which registered version of a model the workers serve, and which (if any) they run beside it as a shadow.
-- A worker reads this row before each round: a change takes effect without a restart.
CREATE TABLE inference.model_serving (
    model_name      text PRIMARY KEY,
    served_version  text NOT NULL,
    shadow_version  text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (model_name, served_version) REFERENCES inference.models (name, version),
    FOREIGN KEY (model_name, shadow_version) REFERENCES inference.models (name, version),
    CHECK (shadow_version IS DISTINCT FROM served_version)
);

-- A history of serving changes (register, shadow, promote), for audit.
CREATE TABLE inference.serving_events (
    id              bigserial PRIMARY KEY,
    model_name      text NOT NULL,
    action          text NOT NULL CHECK (action IN ('serve', 'shadow', 'unshadow', 'promote')),
    version         text,
    previous_served text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION inference.notify_serving() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dicom_etl_jobs', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER model_serving_notify AFTER INSERT OR UPDATE ON inference.model_serving
    FOR EACH STATEMENT EXECUTE FUNCTION inference.notify_serving();

-- The shadow's rows: the same job, instance and shape as inference.diagnoses, in their own table so that the
-- clinician's view (and every query of inference.diagnoses) never sees them. One row per job, instance and
-- shadow version.
CREATE TABLE inference.shadow_diagnoses (
    id                  bigserial PRIMARY KEY,
    job_id              bigint NOT NULL REFERENCES inference.jobs (id),
    series_uid          text NOT NULL REFERENCES imaging.series (series_uid),
    sop_instance_uid    text REFERENCES imaging.instances (sop_instance_uid),
    model_name          text NOT NULL,
    model_version       text NOT NULL,
    label               text NOT NULL,
    probabilities       jsonb NOT NULL,
    threshold           double precision,
    latency_ms          double precision,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX shadow_diagnoses_job_instance_key
    ON inference.shadow_diagnoses (job_id, sop_instance_uid, model_version) NULLS NOT DISTINCT;
CREATE INDEX shadow_diagnoses_model_idx ON inference.shadow_diagnoses (model_name, model_version);

-- Served and shadow rows together, marked, for analysts and `models compare`.
CREATE VIEW inference.all_diagnoses AS
SELECT id, job_id, series_uid, sop_instance_uid, model_name, model_version, label, probabilities, threshold,
       latency_ms, created_at, false AS shadow
FROM inference.diagnoses
UNION ALL
SELECT id, job_id, series_uid, sop_instance_uid, model_name, model_version, label, probabilities, threshold,
       latency_ms, created_at, true AS shadow
FROM inference.shadow_diagnoses;

GRANT SELECT, INSERT, UPDATE ON inference.labels, inference.model_serving, inference.serving_events,
    inference.shadow_diagnoses TO dicom_etl_daemon;
GRANT USAGE, SELECT ON SEQUENCE inference.serving_events_id_seq, inference.shadow_diagnoses_id_seq TO dicom_etl_daemon;
GRANT SELECT ON inference.all_diagnoses TO dicom_etl_daemon;
GRANT SELECT, INSERT, UPDATE ON inference.shadow_diagnoses TO dicom_etl_worker;
GRANT USAGE, SELECT ON SEQUENCE inference.shadow_diagnoses_id_seq TO dicom_etl_worker;
GRANT SELECT ON inference.models, inference.model_serving, inference.all_diagnoses TO dicom_etl_worker;
GRANT SELECT ON inference.labels, inference.model_serving, inference.serving_events, inference.shadow_diagnoses,
    inference.all_diagnoses TO analyst;
