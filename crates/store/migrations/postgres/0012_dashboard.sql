-- The owner dashboard: one-time sign-in codes printed by `storefront admin login-code`, and
-- browser sessions. Both are bearer secrets, so only their SHA-256 is kept.
CREATE TABLE login_codes (
    code_hash  TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);

CREATE TABLE dashboard_sessions (
    secret_hash TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    key_id      TEXT REFERENCES api_keys(id),
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    ended_at    TEXT
);
