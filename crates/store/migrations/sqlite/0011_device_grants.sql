-- Customer-agent tokens through the OAuth 2.0 Device Authorization Grant (RFC 8628, API.md §9).
-- The device code is a bearer secret: only its hash is kept.
CREATE TABLE device_grants (
    device_code_hash TEXT PRIMARY KEY,
    user_code        TEXT NOT NULL UNIQUE,
    customer_email   TEXT NOT NULL,
    agent_name       TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'consumed')),
    account_id       TEXT REFERENCES accounts(id),
    agent_id         TEXT REFERENCES agents(id),
    interval_seconds BIGINT NOT NULL,
    last_polled_at   TEXT,
    created_at       TEXT NOT NULL,
    expires_at       TEXT NOT NULL
);
