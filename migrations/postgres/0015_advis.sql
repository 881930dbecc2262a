-- Change notices (advis): caseworkers' subscriptions to changes on a
-- citizen, and the outbox of notices the batch transaction writes (see
-- ARCHITECTURE.md, "Change notices").

-- One row per (authority, subscriber, citizen, area, KLE prefix); a
-- subscription made again refreshes the privileges stored with it. The
-- prefix is '' when none is given, so the unique key holds on both backends
-- (NULLs are distinct in a unique key).
CREATE TABLE advis_subscriptions (
    id               UUID        PRIMARY KEY,
    authority        TEXT        NOT NULL,
    subscriber       TEXT        NOT NULL,
    citizen          TEXT        NOT NULL,
    data_area        TEXT        NOT NULL,
    kle_prefix       TEXT        NOT NULL DEFAULT '',
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    refreshed_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The subscriber's privileges as of subscribing or refreshing: roles
    -- (JSON array), KLE patterns (JSON array, or NULL for no KLE limit),
    -- sensitivity level, and the token's expiry.
    roles            TEXT        NOT NULL,
    kle_patterns     TEXT,
    sensitivity      INTEGER     NOT NULL CHECK (sensitivity BETWEEN 1 AND 4),
    privileges_until TIMESTAMPTZ NOT NULL,
    UNIQUE (authority, subscriber, citizen, data_area, kle_prefix)
);
CREATE INDEX advis_subscriptions_by_citizen ON advis_subscriptions (citizen);

-- Notices, written in the transaction of the batch that applied their
-- event. Ids and classes only: no personal number, no title.
CREATE TABLE advis_outbox (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notice_id       UUID        NOT NULL UNIQUE,
    subscription_id UUID        NOT NULL,
    event_id        UUID        NOT NULL,
    aggregate_id    UUID        NOT NULL,
    data_area       TEXT        NOT NULL,
    event_type      TEXT        NOT NULL,
    kind            TEXT        NOT NULL CHECK (kind IN ('changed', 'deleted')),
    occurred_at     TIMESTAMPTZ NOT NULL,
    -- The changed row's authority and class (KLE subjects, comma-separated;
    -- sensitivity 1-4), what delivery is checked against.
    row_authority   TEXT        NOT NULL,
    kles            TEXT        NOT NULL,
    sensitivity     INTEGER     NOT NULL CHECK (sensitivity BETWEEN 1 AND 4),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at    TIMESTAMPTZ,
    -- Why the publisher did not produce it (a reason code), if it didn't.
    suppressed      TEXT
);
CREATE INDEX advis_outbox_by_subscription ON advis_outbox (subscription_id, seq);
CREATE INDEX advis_outbox_pending ON advis_outbox (seq) WHERE published_at IS NULL AND suppressed IS NULL;
