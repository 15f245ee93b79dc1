-- 012 received files: the source of each instance received over the network (C-STORE, STOW-RS). The daemon
-- writes the instance to `<drop>/network/<uuid>.dcm` and this row before it answers the sender; the pipeline
-- then takes the file like any dropped file, so its ledger row in ingest.source_files has a path ending in
-- `/network/<file_name>`. AE titles and addresses are not patient data but are kept out of logs all the same.
CREATE TABLE ingest.received_files (
    file_name       text PRIMARY KEY,              -- '<uuid>.dcm'
    transport       text NOT NULL CHECK (transport IN ('dimse', 'stow')),
    sender          text NOT NULL,                 -- the calling AE title, or the STOW-RS token's name
    peer_address    text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON ingest.received_files TO dicom_etl_daemon;

-- Each received file with its ledger row (NULL until the pipeline has claimed it).
CREATE VIEW ingest.received_sources AS
SELECT r.file_name, r.transport, r.sender, r.peer_address, r.received_at, f.id AS source_file_id, f.state
FROM ingest.received_files r
LEFT JOIN ingest.source_files f ON f.path LIKE '%/network/' || r.file_name;
GRANT SELECT ON ingest.received_sources TO dicom_etl_daemon;
