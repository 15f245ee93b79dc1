-- 005 roles and the clinician's view.
-- Roles are cluster-wide and several databases may migrate at once: each CREATE ROLE tolerates a role that
-- exists already or is being created concurrently. They are group roles (NOLOGIN): an administrator grants
-- them to login roles, e.g.  CREATE ROLE alice LOGIN PASSWORD '…' IN ROLE analyst;
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['dicom_etl_daemon', 'dicom_etl_worker', 'analyst', 'clinician'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a migration of another database
            END;
        END IF;
    END LOOP;
END;
$$;

CREATE SCHEMA IF NOT EXISTS clinical;
REVOKE ALL ON SCHEMA clinical FROM PUBLIC;

-- Diagnoses with the original patient ID, accession number and study UID, resolved through the vault.
CREATE VIEW clinical.diagnoses AS
SELECT d.id                    AS diagnosis_id,
       vp.original_patient_id  AS patient_id,
       vp.patient_name         AS patient_name,
       vst.accession_number    AS accession_number,
       vst.original_study_uid  AS study_uid,
       vse.original_series_uid AS series_uid,
       vi.original_sop_instance_uid AS sop_instance_uid,
       st.study_date           AS shifted_study_date,
       se.modality,
       se.body_part,
       se.series_description,
       d.model_name,
       d.model_version,
       d.label,
       d.probabilities,
       d.threshold,
       d.created_at
FROM inference.diagnoses d
JOIN imaging.series se ON se.series_uid = d.series_uid
JOIN imaging.studies st ON st.study_uid = se.study_uid
LEFT JOIN vault.patients vp ON vp.patient_id = st.patient_id
LEFT JOIN vault.studies vst ON vst.study_uid = st.study_uid
LEFT JOIN vault.series vse ON vse.series_uid = se.series_uid
LEFT JOIN vault.instances vi ON vi.sop_instance_uid = d.sop_instance_uid;

-- The daemon writes the catalogue, the ledger, the vault and enqueues jobs.
GRANT USAGE ON SCHEMA imaging, ingest, inference, vault TO dicom_etl_daemon;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA imaging, ingest, inference, vault TO dicom_etl_daemon;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ingest, inference TO dicom_etl_daemon;

-- The worker reads the catalogue, claims jobs and writes diagnoses; no vault, no ledger.
GRANT USAGE ON SCHEMA imaging, inference TO dicom_etl_worker;
GRANT SELECT ON ALL TABLES IN SCHEMA imaging TO dicom_etl_worker;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA inference TO dicom_etl_worker;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA inference TO dicom_etl_worker;

-- Analysts see everything de-identified: imaging and inference, never vault or the ledger's paths.
GRANT USAGE ON SCHEMA imaging, inference TO analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA imaging, inference TO analyst;

-- Clinicians read diagnoses linked back to the patient through the view only.
GRANT USAGE ON SCHEMA clinical TO clinician;
GRANT SELECT ON clinical.diagnoses TO clinician;
