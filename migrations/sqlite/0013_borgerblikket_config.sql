-- The same model as migrations/postgres/0013_borgerblikket_config.sql.
CREATE TABLE borgerblikket_settings (
    authority  TEXT    PRIMARY KEY CHECK (length(authority) = 8 AND authority NOT GLOB '*[^0-9]*'),
    settings   TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    updated_at TEXT    NOT NULL,
    updated_by TEXT    NOT NULL
);

CREATE TABLE borgerblikket_calls (
    bucket       TEXT    NOT NULL
        CHECK ((length(bucket) = 8 AND bucket NOT GLOB '*[^0-9]*') OR bucket = 'national'),
    month        TEXT    NOT NULL CHECK (month GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]'),
    call_kind    TEXT    NOT NULL CHECK (call_kind IN ('cases', 'benefits', 'employment')),
    with_data    INTEGER NOT NULL CHECK (with_data >= 0),
    without_data INTEGER NOT NULL CHECK (without_data >= 0),
    PRIMARY KEY (bucket, month, call_kind)
);
