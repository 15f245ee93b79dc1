-- 001 imaging: the de-identified catalogue analysts query.
-- Every identifier here is a pseudonym; the originals live only in the vault schema.
CREATE SCHEMA IF NOT EXISTS imaging;

CREATE TABLE imaging.patients (
    patient_id      text PRIMARY KEY,              -- pseudonymous PatientID
    sex             text,
    age_years       integer,                        -- from PatientAge when kept by the profile
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE imaging.studies (
    study_uid           text PRIMARY KEY,           -- pseudonymous StudyInstanceUID
    patient_id          text NOT NULL REFERENCES imaging.patients (patient_id),
    study_date          date,                        -- shifted
    study_description   text,
    accession_pseudonym text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX studies_patient_idx ON imaging.studies (patient_id);
CREATE INDEX studies_date_idx ON imaging.studies (study_date);

-- A series also carries its completion state for the daemon: it is "open" while instances arrive and
-- becomes "complete" after a quiet period; an instance arriving later re-opens it with a new revision.
CREATE TABLE imaging.series (
    series_uid          text PRIMARY KEY,           -- pseudonymous SeriesInstanceUID
    study_uid           text NOT NULL REFERENCES imaging.studies (study_uid),
    modality            text,
    body_part           text,
    series_number       integer,
    series_description  text,
    manufacturer        text,
    instance_count      integer NOT NULL DEFAULT 0,
    state               text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'complete')),
    revision            integer NOT NULL DEFAULT 1,
    last_instance_at    timestamptz,
    completed_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX series_study_idx ON imaging.series (study_uid);
CREATE INDEX series_modality_body_part_idx ON imaging.series (modality, body_part);
CREATE INDEX series_open_idx ON imaging.series (last_instance_at) WHERE state = 'open';

CREATE TABLE imaging.instances (
    sop_instance_uid    text PRIMARY KEY,           -- pseudonymous SOPInstanceUID
    series_uid          text NOT NULL REFERENCES imaging.series (series_uid),
    study_uid           text NOT NULL REFERENCES imaging.studies (study_uid),
    patient_id          text NOT NULL REFERENCES imaging.patients (patient_id),
    sop_class_uid       text,
    instance_number     integer,
    modality            text,
    body_part           text,
    study_date          date,                        -- shifted
    series_description  text,
    manufacturer        text,
    rows                integer,
    columns             integer,
    pixel_spacing       double precision[],          -- row, column spacing in mm
    slice_thickness     double precision,
    number_of_frames    integer,
    transfer_syntax_uid text,
    file_key            text,                        -- de-identified DICOM object
    file_sha256         text,
    file_size           bigint,
    tensor_key          text,
    tensor_sha256       text,
    preview_key         text,
    preview_sha256      text,
    header              jsonb NOT NULL DEFAULT '{}'::jsonb,  -- de-identified header as DICOM JSON (PS3.18 F.2)
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instances_series_idx ON imaging.instances (series_uid, instance_number);
CREATE INDEX instances_study_idx ON imaging.instances (study_uid);
CREATE INDEX instances_patient_idx ON imaging.instances (patient_id);
CREATE INDEX instances_modality_body_part_idx ON imaging.instances (modality, body_part);
CREATE INDEX instances_study_date_idx ON imaging.instances (study_date);
CREATE INDEX instances_header_idx ON imaging.instances USING gin (header jsonb_path_ops);
