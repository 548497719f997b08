-- Resource tokens (seed 004): bearer secrets scoped to one service and one action, stored hashed.
CREATE TABLE resource_tokens (
    token_hash TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services(id),
    scope      TEXT NOT NULL CHECK (scope IN ('read', 'extend', 'terminate')),
    created_at TEXT NOT NULL
);
CREATE INDEX resource_tokens_by_service ON resource_tokens(service_id);
