-- Borgerblikket as each authority configures it (src/borgerblikket). One row
-- per authority that has settings; an authority without shows everything as
-- Borgerblikket always did. `settings` is the JSON document the service
-- validated (and validates again when it reads it): at most 1,000 KLE
-- topics and 50 source systems, so a row stays small.
CREATE TABLE borgerblikket_settings (
    authority  TEXT        PRIMARY KEY CHECK (authority ~ '^[0-9]{8}$'),
    settings   TEXT        NOT NULL,
    version    BIGINT      NOT NULL CHECK (version >= 1),
    updated_at TIMESTAMPTZ NOT NULL,
    updated_by TEXT        NOT NULL
);

-- The citizens' calls per month: per authority whose rows a call considered
-- (or `national` when none had rows) and kind of call, how many showed
-- something of it and how many didn't. Added to with an upsert per call.
CREATE TABLE borgerblikket_calls (
    bucket       TEXT   NOT NULL CHECK (bucket ~ '^[0-9]{8}$' OR bucket = 'national'),
    month        TEXT   NOT NULL CHECK (month ~ '^[0-9]{4}-[0-9]{2}$'),
    call_kind    TEXT   NOT NULL CHECK (call_kind IN ('cases', 'benefits', 'employment')),
    with_data    BIGINT NOT NULL CHECK (with_data >= 0),
    without_data BIGINT NOT NULL CHECK (without_data >= 0),
    PRIMARY KEY (bucket, month, call_kind)
);
