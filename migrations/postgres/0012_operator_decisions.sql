-- Operators' resolutions of parked gaps (`overblik parked resolve`), kept in
-- the event store beside the events they moved: who decided what about
-- which aggregate, why, and what it moved. One row per step (a resolution
-- of many events takes several bounded transactions). Purged with the
-- aggregate when it is deleted, like everything else stored about it.
CREATE TABLE operator_decisions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aggregate_id  UUID        NOT NULL,
    decision      TEXT        NOT NULL CHECK (decision IN ('accept_gap', 'drop_parked')),
    from_version  BIGINT,
    applied       BIGINT      NOT NULL,
    dead_lettered BIGINT      NOT NULL,
    reason        TEXT        NOT NULL,
    operator      TEXT        NOT NULL,
    decided_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX operator_decisions_by_aggregate ON operator_decisions (aggregate_id);

-- The oldest parked event, for `status` and `overblik_oldest_parked_seconds`.
CREATE INDEX parked_by_age ON parked (parked_at);
