-- Durable tables of the ingest path; the same model as
-- migrations/postgres/0001_ingest.sql in SQLite's types. UUIDs, dates and
-- instants are TEXT (hyphenated, YYYY-MM-DD, RFC 3339 UTC with microseconds,
-- which sorts as time does). Projection tables are created by the code.

CREATE TABLE events (
    -- AUTOINCREMENT: a sequence number is never reused after a deletion,
    -- which the rebuild's catch-up relies on.
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id          TEXT    NOT NULL UNIQUE,
    aggregate_id      TEXT    NOT NULL,
    aggregate_version INTEGER NOT NULL CHECK (aggregate_version > 0),
    aggregate_kind    TEXT    NOT NULL,
    event_type        TEXT    NOT NULL,
    subject           TEXT    NOT NULL,
    authority         TEXT    NOT NULL,
    occurred_at       TEXT    NOT NULL,
    recorded_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    topic             TEXT    NOT NULL,
    partition_id      INTEGER NOT NULL,
    kafka_offset      INTEGER NOT NULL,
    payload           BLOB    NOT NULL,
    UNIQUE (aggregate_id, aggregate_version)
);

CREATE TABLE consumer_offsets (
    topic        TEXT    NOT NULL,
    partition_id INTEGER NOT NULL,
    next_offset  INTEGER NOT NULL CHECK (next_offset >= 0),
    updated_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (topic, partition_id)
);

CREATE TABLE ingest_counts (
    topic           TEXT    NOT NULL,
    partition_id    INTEGER NOT NULL,
    applied         INTEGER NOT NULL DEFAULT 0,
    duplicates      INTEGER NOT NULL DEFAULT 0,
    ignored_deleted INTEGER NOT NULL DEFAULT 0,
    parked          INTEGER NOT NULL DEFAULT 0,
    dead_lettered   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, partition_id)
);

CREATE TABLE parked (
    event_id          TEXT    PRIMARY KEY,
    aggregate_id      TEXT    NOT NULL,
    aggregate_version INTEGER NOT NULL,
    expected_version  INTEGER NOT NULL,
    topic             TEXT    NOT NULL,
    partition_id      INTEGER NOT NULL,
    kafka_offset      INTEGER NOT NULL,
    message_key       BLOB,
    payload           BLOB    NOT NULL,
    parked_at         TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX parked_by_aggregate ON parked (aggregate_id, aggregate_version);

CREATE TABLE dead_letters (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    topic           TEXT    NOT NULL,
    partition_id    INTEGER NOT NULL,
    kafka_offset    INTEGER NOT NULL,
    message_key     BLOB,
    payload         BLOB    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    detail          TEXT    NOT NULL,
    event_id        TEXT,
    aggregate_id    TEXT,
    dead_at         TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    replay_attempts INTEGER NOT NULL DEFAULT 0,
    last_replay_at  TEXT
);
CREATE UNIQUE INDEX dead_letters_by_origin ON dead_letters (topic, partition_id, kafka_offset, fingerprint);
CREATE INDEX dead_letters_by_aggregate ON dead_letters (aggregate_id);
CREATE INDEX dead_letters_by_reason ON dead_letters (reason, id);

CREATE TABLE tombstones (
    aggregate_id   TEXT PRIMARY KEY,
    aggregate_kind TEXT NOT NULL,
    last_version   INTEGER NOT NULL,
    deleted_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    cause          TEXT NOT NULL CHECK (cause IN ('event', 'retention'))
);

CREATE TABLE projection_meta (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    generation     INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    rebuilt_at     TEXT
);
INSERT INTO projection_meta (id, generation, schema_version) VALUES (1, 0, 0);
