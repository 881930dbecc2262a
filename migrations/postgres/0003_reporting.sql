-- Whether the live projection generation has the reporting tables, and as
-- of when (`overblik rebuild --reporting`); NULL: only the serving tables.
ALTER TABLE projection_meta ADD COLUMN reporting_at TIMESTAMPTZ;
