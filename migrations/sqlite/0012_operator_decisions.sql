-- The same model as migrations/postgres/0012_operator_decisions.sql.
CREATE TABLE operator_decisions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_id  TEXT    NOT NULL,
    decision      TEXT    NOT NULL CHECK (decision IN ('accept_gap', 'drop_parked')),
    from_version  INTEGER,
    applied       INTEGER NOT NULL,
    dead_lettered INTEGER NOT NULL,
    reason        TEXT    NOT NULL,
    operator      TEXT    NOT NULL,
    decided_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX operator_decisions_by_aggregate ON operator_decisions (aggregate_id);

CREATE INDEX parked_by_age ON parked (parked_at);
