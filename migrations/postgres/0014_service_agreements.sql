-- IT systems' service agreements (serviceaftaler): a system's access to the
-- caseworkers' calls, requested by the system and approved by its
-- authority. The scope, the calls and the approver's five answers are JSON
-- written by the service (src/service_agreements.rs); changes move the
-- status with a compare-and-set and are audited in the same transaction.
CREATE TABLE service_agreements (
    id               UUID        PRIMARY KEY,
    it_system        UUID        NOT NULL,
    authority        TEXT        NOT NULL,
    justification    TEXT        NOT NULL,
    rpcs             TEXT        NOT NULL,
    scope            TEXT        NOT NULL,
    valid_from       DATE        NOT NULL,
    valid_to         DATE        NOT NULL,
    status           TEXT        NOT NULL CHECK (status IN ('requested', 'approved', 'rejected', 'revoked')),
    requested_at     TIMESTAMPTZ NOT NULL,
    decided_by       TEXT,
    decided_at       TIMESTAMPTZ,
    answers          TEXT,
    rejection_reason TEXT,
    revoked_by       TEXT,
    revoked_at       TIMESTAMPTZ,
    CHECK (valid_from < valid_to),
    CHECK (status <> 'approved' OR answers IS NOT NULL)
);
-- A system's call reads its agreements with its token's authority.
CREATE INDEX service_agreements_by_system ON service_agreements (it_system, authority);
CREATE INDEX service_agreements_by_authority ON service_agreements (authority);
