-- Events are read in commit order. A time-ordered id is not that order once several processes
-- write (an event committed later can carry an earlier id), and neither is a sequence number by
-- itself (taken at insert, not at commit). So a transaction locks its account's row before it
-- writes the account's events and keeps the lock until it commits (as a charge already does):
-- within one account, positions are taken in commit order, and a reader continuing after the
-- last position it saw misses nothing.
CREATE SEQUENCE events_position_seq;
ALTER TABLE events ADD COLUMN position BIGINT;
WITH ordered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM events)
UPDATE events SET position = ordered.n FROM ordered WHERE events.id = ordered.id;
SELECT setval('events_position_seq', COALESCE((SELECT MAX(position) FROM events), 0) + 1, false);
ALTER TABLE events ALTER COLUMN position SET DEFAULT nextval('events_position_seq');
ALTER TABLE events ALTER COLUMN position SET NOT NULL;
CREATE UNIQUE INDEX events_by_position ON events(position);
DROP INDEX events_by_account;
DROP INDEX events_by_agent;
CREATE INDEX events_by_account ON events(account_id, position);
CREATE INDEX events_by_agent ON events(agent_id, position);

-- balance.low: the balance below which an account is told (NULL: never).
ALTER TABLE accounts ADD COLUMN balance_low_minor BIGINT;

-- Where an account's events are sent. Secrets are sealed (encrypted), never stored in clear.
CREATE TABLE webhook_endpoints (
    id                     TEXT PRIMARY KEY,
    account_id             TEXT NOT NULL REFERENCES accounts(id),
    agent_id               TEXT,
    url                    TEXT NOT NULL,
    events                 TEXT NOT NULL,
    description            TEXT,
    enabled                BOOLEAN NOT NULL,
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
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    last_attempt_at  TEXT,
    last_status_code BIGINT,
    last_error       TEXT,
    last_duration_ms BIGINT,
    locked_by        TEXT,
    locked_until     TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries(endpoint_id, id);
