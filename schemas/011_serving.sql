-- 011 serving: the database side of the HTTP server (DICOMweb, results API, results page).
-- The server answers each request as the group role of the request's token: `SET LOCAL ROLE analyst` for the
-- de-identified archive, `clinician` for the results, `operator` for the audit, so the database enforces the
-- same boundaries as for people who connect with SQL. Its login role is a member of `dicom_etl_server`, which
-- may take those roles and may append to the audit, nothing more.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['dicom_etl_server', 'operator'] LOOP
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

-- Every read of identified data (original patient ID, name, accession number, original UIDs): who, what, when.
-- Append-only for the server; only the operator role reads it. `parameters` holds the filters as given, which
-- may be identifiers themselves: that is why no other role may read this table.
CREATE SCHEMA IF NOT EXISTS audit;
REVOKE ALL ON SCHEMA audit FROM PUBLIC;

CREATE TABLE audit.identified_reads (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    principal       text NOT NULL,                 -- the token's name
    role            text NOT NULL,                 -- the token's role
    action          text NOT NULL,                 -- e.g. 'GET /diagnoses'
    parameters      jsonb NOT NULL DEFAULT '{}'::jsonb,
    diagnosis_ids   bigint[] NOT NULL DEFAULT '{}',
    result_count    integer NOT NULL,
    client          text                           -- the peer address
);
CREATE INDEX identified_reads_at_idx ON audit.identified_reads (at);
CREATE INDEX identified_reads_principal_idx ON audit.identified_reads (principal, at);

GRANT USAGE ON SCHEMA audit TO dicom_etl_server, "operator";
GRANT INSERT ON audit.identified_reads TO dicom_etl_server;
GRANT USAGE ON SEQUENCE audit.identified_reads_id_seq TO dicom_etl_server;
GRANT SELECT ON audit.identified_reads TO "operator";

GRANT analyst, clinician, "operator" TO dicom_etl_server;
