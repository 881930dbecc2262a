-- The serving path: data-exchange agreements and the audit log.

CREATE TABLE agreements (
    agreement_id TEXT        PRIMARY KEY,
    authority    TEXT        NOT NULL,
    data_area    TEXT        NOT NULL,
    purpose_id   INTEGER     NOT NULL,
    legal_basis  TEXT        NOT NULL,
    klik_task    TEXT,
    status       TEXT        NOT NULL CHECK (status IN ('requested', 'signed', 'revoked')),
    valid_from   DATE        NOT NULL,
    valid_to     DATE        NOT NULL,
    signed_by    TEXT,
    signed_at    TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (valid_from < valid_to)
);
CREATE INDEX agreements_by_scope ON agreements (authority, data_area, purpose_id);

-- One record per decision. Every column but `hash` is covered by `hash`:
-- SHA-256 over `prev_hash` and the record's canonical form (src/audit).
CREATE TABLE audit_log (
    seq             BIGINT      PRIMARY KEY,
    recorded_at     TIMESTAMPTZ NOT NULL,
    transaction_id  TEXT        NOT NULL,
    request_id      TEXT        NOT NULL,
    kind            TEXT        NOT NULL,
    user_id         TEXT        NOT NULL,
    user_name       TEXT        NOT NULL,
    authority       TEXT        NOT NULL,
    org_unit        TEXT        NOT NULL,
    it_system       TEXT        NOT NULL,
    roles_used      TEXT        NOT NULL,
    data_area       TEXT        NOT NULL,
    purpose_id      INTEGER,
    agreement_id    TEXT        NOT NULL,
    citizen         TEXT        NOT NULL,
    search_criteria TEXT        NOT NULL,
    decision        TEXT        NOT NULL,
    reason          TEXT        NOT NULL,
    rows_returned   INTEGER     NOT NULL,
    alarms          TEXT        NOT NULL,
    prev_hash       TEXT        NOT NULL,
    hash            TEXT        NOT NULL
);
CREATE INDEX audit_by_citizen ON audit_log (citizen, seq);
CREATE INDEX audit_by_user ON audit_log (user_id, seq);
CREATE INDEX audit_by_time ON audit_log (recorded_at);

-- The chain's end, locked by each writer so appends serialise.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Append-only, enforced in the database.
CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
