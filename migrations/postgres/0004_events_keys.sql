-- The event store's keys, cheaper. (aggregate_id, aggregate_version) is
-- what identifies an event in its stream, what the rebuild reads in order
-- and what a deletion finds by: it becomes the primary key in place of its
-- unique constraint. `seq` only orders appends for the rebuild's catch-up
-- (`seq > S`); it grows with the table's physical order, so a BRIN index of
-- a few pages serves that instead of a B-tree entry per event. event_id
-- keeps its unique index: it is how a re-sent event is recognised.
ALTER TABLE events
    DROP CONSTRAINT events_pkey,
    DROP CONSTRAINT events_aggregate_id_aggregate_version_key,
    ADD CONSTRAINT events_pkey PRIMARY KEY (aggregate_id, aggregate_version);
CREATE INDEX events_by_seq ON events USING brin (seq);
