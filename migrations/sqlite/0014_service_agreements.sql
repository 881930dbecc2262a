-- The same model as migrations/postgres/0014_service_agreements.sql.
CREATE TABLE service_agreements (
    id               TEXT PRIMARY KEY,
    it_system        TEXT NOT NULL,
    authority        TEXT NOT NULL,
    justification    TEXT NOT NULL,
    rpcs             TEXT NOT NULL,
    scope            TEXT NOT NULL,
    valid_from       TEXT NOT NULL,
    valid_to         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('requested', 'approved', 'rejected', 'revoked')),
    requested_at     TEXT NOT NULL,
    decided_by       TEXT,
    decided_at       TEXT,
    answers          TEXT,
    rejection_reason TEXT,
    revoked_by       TEXT,
    revoked_at       TEXT,
    CHECK (valid_from < valid_to),
    CHECK (status <> 'approved' OR answers IS NOT NULL)
);
CREATE INDEX service_agreements_by_system ON service_agreements (it_system, authority);
CREATE INDEX service_agreements_by_authority ON service_agreements (authority);
