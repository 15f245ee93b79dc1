-- 006 one diagnosis per job and instance: a retried or re-delivered job cannot write a second row for the
-- same image. Series-level results (sop_instance_uid NULL) count once per job too. Rows a job already
-- wrote twice before this key existed are reduced to the first one written.
DELETE FROM inference.diagnoses d
USING inference.diagnoses e
WHERE d.job_id = e.job_id
  AND d.sop_instance_uid IS NOT DISTINCT FROM e.sop_instance_uid
  AND d.id > e.id;

CREATE UNIQUE INDEX diagnoses_job_instance_key
    ON inference.diagnoses (job_id, sop_instance_uid) NULLS NOT DISTINCT
    WHERE job_id IS NOT NULL;

COMMENT ON INDEX inference.diagnoses_job_instance_key IS
    'one diagnosis per job and instance (NULL instance: one series-level result per job)';
