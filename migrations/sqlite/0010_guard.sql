-- The guard: the same model as migrations/postgres/0010_guard.sql. SQLite
-- can't change a primary key in place, so the agreements table is rebuilt.

CREATE TABLE agreements_by_authority (
    agreement_id  TEXT    NOT NULL,
    authority     TEXT    NOT NULL,
    data_area     TEXT    NOT NULL,
    purpose_id    INTEGER NOT NULL,
    legal_basis   TEXT    NOT NULL,
    klik_task     TEXT,
    status        TEXT    NOT NULL CHECK (status IN ('requested', 'signed', 'revoked')),
    valid_from    TEXT    NOT NULL,
    valid_to      TEXT    NOT NULL,
    signed_by     TEXT,
    signed_at     TEXT,
    revoked_at    TEXT,
    created_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    registered_by TEXT,
    PRIMARY KEY (authority, agreement_id),
    CHECK (valid_from < valid_to)
);
INSERT INTO agreements_by_authority (agreement_id, authority, data_area, purpose_id, legal_basis, klik_task, status,
                                     valid_from, valid_to, signed_by, signed_at, revoked_at, created_at)
SELECT agreement_id, authority, data_area, purpose_id, legal_basis, klik_task, status,
       valid_from, valid_to, signed_by, signed_at, revoked_at, created_at
FROM agreements;
DROP TABLE agreements;
ALTER TABLE agreements_by_authority RENAME TO agreements;
CREATE INDEX agreements_by_scope ON agreements (authority, data_area, purpose_id);

CREATE INDEX audit_by_authority ON audit_log (authority, seq);
