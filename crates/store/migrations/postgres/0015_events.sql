-- The event log (an outbox): one row per thing that happened, written in the transaction of the
-- change it records. Ids are time-ordered, so "after this id" is "after this event".
CREATE TABLE events (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    agent_id   TEXT,
    type       TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX events_by_account ON events(account_id, id);
CREATE INDEX events_by_agent ON events(agent_id, id);
