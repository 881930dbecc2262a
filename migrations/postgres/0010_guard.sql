-- The guard: agreement ids are unique per authority (two authorities may
-- use the same id; neither learns of the other's), an agreement records
-- who registered it (the signer must be someone else), and the audit log
-- is read per authority by that authority's data-protection officer.

ALTER TABLE agreements DROP CONSTRAINT agreements_pkey;
ALTER TABLE agreements ADD PRIMARY KEY (authority, agreement_id);
ALTER TABLE agreements ADD COLUMN registered_by TEXT;

CREATE INDEX audit_by_authority ON audit_log (authority, seq);
