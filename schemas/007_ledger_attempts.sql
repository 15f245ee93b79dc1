-- 007 ledger attempts: `attempts` now counts only failed attempts that may be the file's fault (a sandbox
-- crash or timeout, recorded as a transition to 'failed'). Claims are counted apart, and so are claims that
-- ended with no outcome (the daemon was killed, or the database went away mid-file): `interruptions`.
-- An outage releases the claim back to 'discovered' when it can, and counts nothing against the file.
ALTER TABLE ingest.source_files ADD COLUMN claims integer NOT NULL DEFAULT 0;
ALTER TABLE ingest.source_files ADD COLUMN interruptions integer NOT NULL DEFAULT 0;
UPDATE ingest.source_files SET claims = attempts;
