-- One approval queue for the team: the daemon holding an approval channel's lease (one at a
-- time, fenced) relays every member's pending approvals and writes the outcome next to the
-- pending row, where the daemon that asked reads it. Applied once (postgres/migrate.rs).

-- The database's clock, in milliseconds: leases are judged by one clock, not each host's.
CREATE FUNCTION agp_now_ms() RETURNS BIGINT LANGUAGE sql VOLATILE AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT
$$;

-- Who holds an approval channel's connection (e.g. `slack`). The fencing token grows by one
-- at every change of holder; a holder's writes check it in the same statement.
CREATE TABLE channel_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    fencing_token BIGINT NOT NULL,
    acquired_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

-- The relay's outcome (an ApprovalOutcome as JSON), written once, read by the asking daemon,
-- which then settles `status` as it does for any channel.
ALTER TABLE pending_approvals ADD COLUMN outcome_json TEXT;
ALTER TABLE pending_approvals ADD COLUMN outcome_by TEXT;
ALTER TABLE pending_approvals ADD COLUMN outcome_at_ms BIGINT;

CREATE TRIGGER approvals_outcome_notify AFTER UPDATE OF outcome_json ON pending_approvals
    FOR EACH STATEMENT EXECUTE FUNCTION agp_notify_approvals();

-- The channel's own record of each approval it put to people (for Slack: the nonce its
-- buttons carry, the message, the votes), shared so that a new holder adopts the messages its
-- predecessor posted.
CREATE TABLE channel_records (
    channel TEXT NOT NULL,
    nonce TEXT NOT NULL,
    session TEXT NOT NULL,
    call_id TEXT NOT NULL,
    input_sha256 TEXT NOT NULL,
    decided BOOLEAN NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    record_json TEXT NOT NULL,
    PRIMARY KEY (channel, nonce),
    UNIQUE (channel, session, call_id, input_sha256)
);
CREATE INDEX channel_records_undecided ON channel_records (channel, decided, expires_at_ms);

-- Per session, the channel's root message (approvals are posted in its thread).
CREATE TABLE channel_roots (
    channel TEXT NOT NULL,
    session TEXT NOT NULL,
    place TEXT NOT NULL,
    root TEXT NOT NULL,
    PRIMARY KEY (channel, session)
);
