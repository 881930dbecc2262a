-- The audit log becomes verifiable outside the database: each record
-- carries a MAC under the service's checkpoint key (so a record the
-- service did not write is found), signed checkpoints are kept here as
-- well as in files outside the database, with the Merkle tree's tiles
-- (complete subtrees of 256, 65,536, … records) that make proofs cheap.

ALTER TABLE audit_log ADD COLUMN mac TEXT NOT NULL DEFAULT '';

CREATE TABLE audit_checkpoints (
    size     BIGINT PRIMARY KEY,
    -- The size of the checkpoint this one extends: each is extended once,
    -- so the checkpoints form one chain however many instances make them.
    after    BIGINT NOT NULL UNIQUE,
    -- The signed tree head, as in the checkpoint files.
    head     TEXT   NOT NULL,
    -- The tree's right edge at this size (hex hashes, comma-separated):
    -- where the next checkpoint continues.
    frontier TEXT   NOT NULL
);

CREATE TABLE audit_tiles (
    height INTEGER NOT NULL,
    idx    BIGINT  NOT NULL,
    hash   TEXT    NOT NULL,
    PRIMARY KEY (height, idx)
);

CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_tiles_no_change BEFORE UPDATE OR DELETE ON audit_tiles
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();

-- The one way the service's role moves the head: forward, from where it
-- is. It runs with its owner's rights; the service's role gets EXECUTE on
-- it and no UPDATE on audit_head (overblik migrate --runtime-role).
CREATE FUNCTION audit_advance(p_from BIGINT, p_from_hash TEXT, p_to BIGINT, p_to_hash TEXT) RETURNS BOOLEAN
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH moved AS (
        UPDATE public.audit_head SET seq = p_to, hash = p_to_hash
        WHERE id = 1 AND seq = p_from AND hash = p_from_hash AND p_to > p_from
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM moved)
$$;
REVOKE ALL ON FUNCTION audit_advance(BIGINT, TEXT, BIGINT, TEXT) FROM PUBLIC;
