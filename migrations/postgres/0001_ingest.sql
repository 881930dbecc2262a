-- Durable tables of the ingest path. The read-model (projection) tables are
-- not created here: they are derived from `events`, defined once in
-- src/store/schema.rs and rebuilt blue/green by generation, with views under
-- their plain names (see ARCHITECTURE.md, "Projections").

-- The event store: every applied event, with the bytes it arrived as.
-- Rows are deleted only with their aggregate (physical deletion).
CREATE TABLE events (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id          UUID        NOT NULL UNIQUE,
    aggregate_id      UUID        NOT NULL,
    aggregate_version BIGINT      NOT NULL CHECK (aggregate_version > 0),
    aggregate_kind    TEXT        NOT NULL,
    event_type        TEXT        NOT NULL,
    subject           TEXT        NOT NULL,
    authority         TEXT        NOT NULL,
    occurred_at       TIMESTAMPTZ NOT NULL,
    recorded_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    topic             TEXT        NOT NULL,
    partition_id      INTEGER     NOT NULL,
    kafka_offset      BIGINT      NOT NULL,
    payload           BYTEA       NOT NULL,
    UNIQUE (aggregate_id, aggregate_version)
);

-- The next Kafka offset to consume per partition. Written in the same
-- transaction as the batch it ends, with a compare-and-set on next_offset so
-- a consumer that lost its partition cannot commit.
CREATE TABLE consumer_offsets (
    topic        TEXT        NOT NULL,
    partition_id INTEGER     NOT NULL,
    next_offset  BIGINT      NOT NULL CHECK (next_offset >= 0),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition_id)
);

-- What became of every consumed message, per partition. Totals satisfy
-- consumed = applied + duplicates + parked + dead_lettered.
CREATE TABLE ingest_counts (
    topic           TEXT    NOT NULL,
    partition_id    INTEGER NOT NULL,
    applied         BIGINT  NOT NULL DEFAULT 0,
    duplicates      BIGINT  NOT NULL DEFAULT 0,
    ignored_deleted BIGINT  NOT NULL DEFAULT 0,
    parked          BIGINT  NOT NULL DEFAULT 0,
    dead_lettered   BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, partition_id)
);

-- Events waiting for an earlier version of their aggregate.
CREATE TABLE parked (
    event_id          UUID        PRIMARY KEY,
    aggregate_id      UUID        NOT NULL,
    aggregate_version BIGINT      NOT NULL,
    expected_version  BIGINT      NOT NULL,
    topic             TEXT        NOT NULL,
    partition_id      INTEGER     NOT NULL,
    kafka_offset      BIGINT      NOT NULL,
    message_key       BYTEA,
    payload           BYTEA       NOT NULL,
    parked_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX parked_by_aggregate ON parked (aggregate_id, aggregate_version);

-- Messages refused with a reason, kept with their raw bytes for replay.
CREATE TABLE dead_letters (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic           TEXT        NOT NULL,
    partition_id    INTEGER     NOT NULL,
    kafka_offset    BIGINT      NOT NULL,
    message_key     BYTEA,
    payload         BYTEA       NOT NULL,
    -- SHA-256 of key and payload: with the coordinates, identifies the
    -- message, so consuming it again is a duplicate, not a second letter.
    fingerprint     TEXT        NOT NULL,
    reason          TEXT        NOT NULL,
    detail          TEXT        NOT NULL,
    event_id        UUID,
    aggregate_id    UUID,
    dead_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    replay_attempts INTEGER     NOT NULL DEFAULT 0,
    last_replay_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX dead_letters_by_origin ON dead_letters (topic, partition_id, kafka_offset, fingerprint);
CREATE INDEX dead_letters_by_aggregate ON dead_letters (aggregate_id);
CREATE INDEX dead_letters_by_reason ON dead_letters (reason, id);

-- What is left of a deleted aggregate: no personal data, only enough to
-- ignore its late events.
CREATE TABLE tombstones (
    aggregate_id   UUID        PRIMARY KEY,
    aggregate_kind TEXT        NOT NULL,
    last_version   BIGINT      NOT NULL,
    deleted_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    cause          TEXT        NOT NULL CHECK (cause IN ('event', 'retention'))
);

-- Which generation of projection tables is live, and the schema version of
-- the code that built it.
CREATE TABLE projection_meta (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    generation     INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    rebuilt_at     TIMESTAMPTZ
);
INSERT INTO projection_meta (id, generation, schema_version) VALUES (1, 0, 0);
