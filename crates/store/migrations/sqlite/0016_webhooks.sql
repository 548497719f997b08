-- Events are read in commit order. A time-ordered id is not that order once several processes
-- write (an event committed later can carry an earlier id), so each event gets a position when
-- it is inserted; SQLite has one writer at a time, so insert order is commit order.
ALTER TABLE events ADD COLUMN position INTEGER;
UPDATE events SET position = rowid;
CREATE UNIQUE INDEX events_by_position ON events(position);
DROP INDEX events_by_account;
DROP INDEX events_by_agent;
CREATE INDEX events_by_account ON events(account_id, position);
CREATE INDEX events_by_agent ON events(agent_id, position);

-- balance.low: the balance below which an account is told (NULL: never).
ALTER TABLE accounts ADD COLUMN balance_low_minor INTEGER;

-- Where an account's events are sent. Secrets are sealed (encrypted), never stored in clear.
CREATE TABLE webhook_endpoints (
    id                     TEXT PRIMARY KEY,
    account_id             TEXT NOT NULL REFERENCES accounts(id),
    agent_id               TEXT,
    url                    TEXT NOT NULL,
    events                 TEXT NOT NULL,
    description            TEXT,
    enabled                INTEGER NOT NULL,
    disabled_reason        TEXT,
    failing_since          TEXT,
    secret_sealed          TEXT NOT NULL,
    previous_secret_sealed TEXT,
    previous_secret_until  TEXT,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
);
CREATE INDEX webhook_endpoints_by_account ON webhook_endpoints(account_id, id);

-- The delivery queue: one row per (endpoint, event), written in the transaction of the event,
-- claimed under a lease like a job so that a delivery in flight when its process dies is sent
-- again, and by one worker at a time.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    account_id       TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    last_attempt_at  TEXT,
    last_status_code INTEGER,
    last_error       TEXT,
    last_duration_ms INTEGER,
    locked_by        TEXT,
    locked_until     TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries(endpoint_id, id);
