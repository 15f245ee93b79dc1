-- 003 inference: models, the job queue (a transactional outbox) and diagnoses.
CREATE SCHEMA IF NOT EXISTS inference;

CREATE TABLE inference.models (
    name            text NOT NULL,
    version         text NOT NULL,
    input_recipe    text NOT NULL,                 -- a normalisation recipe name
    classes         jsonb NOT NULL DEFAULT '[]'::jsonb,
    threshold       double precision,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

-- One job per (series, model, series revision): a series is never queued twice for the same model version.
CREATE TABLE inference.jobs (
    id              bigserial PRIMARY KEY,
    series_uid      text NOT NULL REFERENCES imaging.series (series_uid),
    series_revision integer NOT NULL,
    model_name      text NOT NULL,
    model_version   text NOT NULL,
    state           text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
    run_at          timestamptz NOT NULL DEFAULT now(),
    lease_token     uuid,
    lease_until     timestamptz,
    last_error      text,                          -- a machine-readable code
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    UNIQUE (series_uid, model_name, model_version, series_revision)
);
CREATE INDEX jobs_ready_idx ON inference.jobs (run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_lease_idx ON inference.jobs (lease_until) WHERE state = 'running';

-- Wake idle workers: one notification per inserting statement, delivered at commit.
CREATE FUNCTION inference.notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dicom_etl_jobs', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER jobs_notify AFTER INSERT ON inference.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION inference.notify_jobs();

CREATE TABLE inference.diagnoses (
    id                  bigserial PRIMARY KEY,
    job_id              bigint REFERENCES inference.jobs (id),
    series_uid          text NOT NULL REFERENCES imaging.series (series_uid),
    sop_instance_uid    text REFERENCES imaging.instances (sop_instance_uid),  -- NULL for a series-level result
    model_name          text NOT NULL,
    model_version       text NOT NULL,
    label               text NOT NULL,
    probabilities       jsonb NOT NULL,            -- {"class": probability, …}
    threshold           double precision,
    latency_ms          double precision,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX diagnoses_series_idx ON inference.diagnoses (series_uid);
CREATE INDEX diagnoses_job_idx ON inference.diagnoses (job_id);
CREATE INDEX diagnoses_model_idx ON inference.diagnoses (model_name, model_version, label);
