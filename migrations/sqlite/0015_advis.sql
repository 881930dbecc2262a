-- The same model as migrations/postgres/0015_advis.sql.
CREATE TABLE advis_subscriptions (
    id               TEXT    PRIMARY KEY,
    authority        TEXT    NOT NULL,
    subscriber       TEXT    NOT NULL,
    citizen          TEXT    NOT NULL,
    data_area        TEXT    NOT NULL,
    kle_prefix       TEXT    NOT NULL DEFAULT '',
    created_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    refreshed_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    roles            TEXT    NOT NULL,
    kle_patterns     TEXT,
    sensitivity      INTEGER NOT NULL CHECK (sensitivity BETWEEN 1 AND 4),
    privileges_until TEXT    NOT NULL,
    UNIQUE (authority, subscriber, citizen, data_area, kle_prefix)
);
CREATE INDEX advis_subscriptions_by_citizen ON advis_subscriptions (citizen);

CREATE TABLE advis_outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    notice_id       TEXT    NOT NULL UNIQUE,
    subscription_id TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    aggregate_id    TEXT    NOT NULL,
    data_area       TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('changed', 'deleted')),
    occurred_at     TEXT    NOT NULL,
    row_authority   TEXT    NOT NULL,
    kles            TEXT    NOT NULL,
    sensitivity     INTEGER NOT NULL CHECK (sensitivity BETWEEN 1 AND 4),
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    published_at    TEXT,
    suppressed      TEXT
);
CREATE INDEX advis_outbox_by_subscription ON advis_outbox (subscription_id, seq);
CREATE INDEX advis_outbox_pending ON advis_outbox (seq) WHERE published_at IS NULL AND suppressed IS NULL;
