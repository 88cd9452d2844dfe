-- The agent journal of every scheduler replica (services/scheduler/journal_pg.py).
-- request_id is UNIQUE: two replicas creating the same request_id at once cannot both win.
-- owner / lease_until / fence: the replica looking after an unfinished agent, until when, and a counter
-- bumped on every take-over; a write that names an old fence changes nothing.
CREATE TABLE agents (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    request_id TEXT UNIQUE,
    template_name TEXT NOT NULL,
    template_version TEXT NOT NULL,
    requested_version TEXT NOT NULL,
    input BYTEA NOT NULL,
    labels JSONB NOT NULL,
    retryable BOOLEAN NOT NULL,
    timeout_ms BIGINT NOT NULL,
    state SMALLINT NOT NULL,
    reason TEXT NOT NULL,
    cause TEXT NOT NULL,
    status TEXT NOT NULL,
    output BYTEA NOT NULL,
    output_truncated BOOLEAN NOT NULL,
    exit_code INTEGER NOT NULL,
    fuel_used BIGINT NOT NULL,
    attempts INTEGER NOT NULL,
    executor TEXT NOT NULL,
    in_flight BOOLEAN NOT NULL,
    deadline_us BIGINT,
    create_us BIGINT NOT NULL,
    start_us BIGINT,
    finish_us BIGINT,
    owner TEXT NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    fence BIGINT NOT NULL
);
CREATE INDEX agents_by_state ON agents (state, seq);
CREATE INDEX agents_by_template ON agents (template_name, seq);
CREATE INDEX agents_by_create ON agents (create_us, id);
-- Take-over scans only unfinished agents (PENDING = 1, RUNNING = 2) by lease expiry.
CREATE INDEX agents_unfinished_lease ON agents (lease_until) WHERE state IN (1, 2);
