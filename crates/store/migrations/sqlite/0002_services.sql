-- Services: what async orders deliver (machine leases), in the same shape on both backends.
CREATE TABLE services (
    id                      TEXT PRIMARY KEY,
    order_id                TEXT NOT NULL UNIQUE REFERENCES orders(id),
    account_id              TEXT NOT NULL REFERENCES accounts(id),
    product_id              TEXT NOT NULL,
    status                  TEXT NOT NULL,
    display_name            TEXT NOT NULL,
    image                   TEXT NOT NULL,
    region                  TEXT NOT NULL,
    authorized_key          TEXT,
    host                    TEXT,
    ssh_port                INTEGER,
    ssh_username            TEXT NOT NULL,
    host_key_fingerprint    TEXT,
    -- A generated private key, sealed with AES-256-GCM (never stored in the clear).
    private_key_sealed      TEXT,
    lease_seconds           INTEGER NOT NULL,
    expires_at              TEXT,
    management_capabilities TEXT NOT NULL,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL
);
CREATE INDEX services_by_account ON services(account_id, id);
