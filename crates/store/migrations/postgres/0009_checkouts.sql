-- Checkout sessions for purchases an agent makes elsewhere (seed 003): the storefront governs
-- them (rules, approvals, receipts) but does not take the payment.
CREATE TABLE checkouts (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts(id),
    agent_id        TEXT NOT NULL REFERENCES agents(id),
    status          TEXT NOT NULL CHECK (status IN ('not_ready_for_payment', 'ready_for_payment', 'approved', 'completed', 'canceled')),
    currency        TEXT NOT NULL,
    items           TEXT NOT NULL,
    total_minor     BIGINT NOT NULL,
    merchant_name   TEXT,
    merchant_domain TEXT,
    category        TEXT,
    metadata        TEXT,
    rule_result     TEXT,
    rule_name       TEXT,
    reason          TEXT,
    receipt_order   TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL
);
CREATE INDEX checkouts_by_agent ON checkouts(agent_id, created_at);

ALTER TABLE approvals ADD COLUMN checkout_id TEXT REFERENCES checkouts(id);
