-- 004 vault: pseudonym ↔ original identifiers. Readable by the daemon and, through clinical.diagnoses, by
-- clinicians; never by analysts or the worker.
CREATE SCHEMA IF NOT EXISTS vault;
REVOKE ALL ON SCHEMA vault FROM PUBLIC;

CREATE TABLE vault.patients (
    patient_id          text PRIMARY KEY REFERENCES imaging.patients (patient_id),  -- pseudonym
    original_patient_id text NOT NULL,
    patient_name        text,
    birth_date          text,                      -- as in the source (DA), possibly partial
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vault.studies (
    study_uid           text PRIMARY KEY REFERENCES imaging.studies (study_uid),    -- pseudonym
    original_study_uid  text NOT NULL,
    accession_number    text,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vault.series (
    series_uid          text PRIMARY KEY REFERENCES imaging.series (series_uid),    -- pseudonym
    original_series_uid text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vault.instances (
    sop_instance_uid          text PRIMARY KEY REFERENCES imaging.instances (sop_instance_uid),  -- pseudonym
    original_sop_instance_uid text NOT NULL,
    created_at                timestamptz NOT NULL DEFAULT now()
);
