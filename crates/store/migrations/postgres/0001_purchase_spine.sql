-- PostgreSQL twin of migrations/sqlite/0001: the same columns, so one body of SQL serves both.
-- The purchase spine: settings, accounts, keys, the credits ledger, quotes, idempotency keys
-- and orders. Timestamps are RFC 3339 UTC text with milliseconds (lexical order = time order);
-- ids are prefixed UUIDv7 (lexical order = creation order); JSON columns hold text.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    currency      TEXT NOT NULL,
    -- Denormalized sum of the account's ledger entries, kept in the same transaction as each
    -- entry; the CHECK makes an overdraft impossible even for a buggy caller.
    balance_minor BIGINT NOT NULL DEFAULT 0 CHECK (balance_minor >= 0),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    role        TEXT NOT NULL CHECK (role IN ('owner', 'agent')),
    agent_id    TEXT,
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE INDEX api_keys_by_account ON api_keys(account_id, id);

CREATE TABLE ledger_entries (
    id                  TEXT PRIMARY KEY,
    account_id          TEXT NOT NULL REFERENCES accounts(id),
    kind                TEXT NOT NULL CHECK (kind IN ('top_up', 'charge', 'refund', 'adjustment')),
    amount_minor        BIGINT NOT NULL,
    balance_after_minor BIGINT NOT NULL CHECK (balance_after_minor >= 0),
    order_id            TEXT,
    description         TEXT NOT NULL,
    created_at          TEXT NOT NULL
);
CREATE INDEX ledger_entries_by_account ON ledger_entries(account_id, id);
-- At most one charge and one refund per order, whatever happens above.
CREATE UNIQUE INDEX ledger_entries_one_per_order_and_kind
    ON ledger_entries(order_id, kind) WHERE order_id IS NOT NULL AND kind IN ('charge', 'refund');

CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only';
END;
$$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();

CREATE TABLE quotes (
    id                      TEXT PRIMARY KEY,
    account_id              TEXT REFERENCES accounts(id),
    product_id              TEXT NOT NULL,
    quantity                BIGINT NOT NULL,
    configuration           TEXT NOT NULL,
    warnings                TEXT NOT NULL,
    line_items              TEXT NOT NULL,
    total_minor             BIGINT NOT NULL,
    currency                TEXT NOT NULL,
    catalog_version         TEXT NOT NULL,
    management_capabilities TEXT NOT NULL,
    created_at              TEXT NOT NULL,
    expires_at              TEXT NOT NULL
);

CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    route        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    -- NULL while the request that claimed the key is running; its outcome (JSON) afterwards.
    outcome      TEXT,
    locked_at    TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    completed_at TEXT,
    PRIMARY KEY (scope, route, key)
);

CREATE TABLE orders (
    id                             TEXT PRIMARY KEY,
    account_id                     TEXT REFERENCES accounts(id),
    status                         TEXT NOT NULL,
    payment_status                 TEXT NOT NULL,
    payment_method                 TEXT NOT NULL,
    product_id                     TEXT NOT NULL,
    quantity                       BIGINT NOT NULL,
    configuration                  TEXT NOT NULL,
    configuration_warnings         TEXT NOT NULL,
    line_items                     TEXT NOT NULL,
    total_minor                    BIGINT NOT NULL,
    currency                       TEXT NOT NULL,
    quote_id                       TEXT NOT NULL,
    idempotency_scope              TEXT NOT NULL,
    idempotency_route              TEXT NOT NULL,
    idempotency_key                TEXT NOT NULL,
    provisioning_estimate          TEXT,
    requires_install_configuration BOOLEAN NOT NULL,
    service_id                     TEXT,
    result                         TEXT,
    failure                        TEXT,
    created_at                     TEXT NOT NULL,
    updated_at                     TEXT NOT NULL,
    -- One order per idempotency key, even if two processes race past the key claim.
    UNIQUE (idempotency_scope, idempotency_route, idempotency_key)
);
CREATE INDEX orders_by_account ON orders(account_id, id);

-- Durable background jobs (provisioning, webhooks): claimed under a lease by one worker at a time.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at       TEXT NOT NULL,
    locked_by    TEXT,
    locked_until TEXT,
    last_error   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX jobs_due ON jobs(status, run_at);
