-- Agents and the owner's rules over them (API.md §8); orders remember the agent that placed
-- them, so budgets and rates are sums and counts over the agent's own orders.
CREATE TABLE agents (
    id             TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'pending', 'suspended')),
    soul           TEXT NOT NULL,
    trusted_stores TEXT NOT NULL,
    blocked_stores TEXT NOT NULL,
    deleted_at     TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX agents_by_account ON agents(account_id, id);

CREATE TABLE rules (
    id         TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL REFERENCES agents(id),
    code       TEXT NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    params     TEXT NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('deny', 'escalate')),
    enabled    INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (agent_id, code)
);

ALTER TABLE orders ADD COLUMN agent_id TEXT;
CREATE INDEX orders_by_agent ON orders(agent_id, created_at);
