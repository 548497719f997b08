-- Escalated purchases waiting for the owner (API.md §8). An approval decides once: every
-- transition is conditional on 'pending'.
CREATE TABLE approvals (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts(id),
    agent_id        TEXT NOT NULL REFERENCES agents(id),
    order_id        TEXT UNIQUE REFERENCES orders(id),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    tier            TEXT NOT NULL,
    rule_code       TEXT NOT NULL,
    reason          TEXT NOT NULL,
    amount_minor    BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    decision_reason TEXT,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    decided_at      TEXT
);
CREATE INDEX approvals_by_account ON approvals(account_id, status, id);
