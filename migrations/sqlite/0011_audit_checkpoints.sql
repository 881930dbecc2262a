-- The same model as migrations/postgres/0011_audit_checkpoints.sql (SQLite
-- has no roles: the head moves by a guarded UPDATE).

ALTER TABLE audit_log ADD COLUMN mac TEXT NOT NULL DEFAULT '';

CREATE TABLE audit_checkpoints (
    size     INTEGER PRIMARY KEY,
    after    INTEGER NOT NULL UNIQUE,
    head     TEXT    NOT NULL,
    frontier TEXT    NOT NULL
);

CREATE TABLE audit_tiles (
    height INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hash   TEXT    NOT NULL,
    PRIMARY KEY (height, idx)
);

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_tiles_no_update BEFORE UPDATE ON audit_tiles
BEGIN SELECT RAISE(ABORT, 'audit_tiles is append-only'); END;
CREATE TRIGGER audit_tiles_no_delete BEFORE DELETE ON audit_tiles
BEGIN SELECT RAISE(ABORT, 'audit_tiles is append-only'); END;
