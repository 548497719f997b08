-- The append-only audit of governance: every check, decision, approval and kill switch, with the
-- rule that decided (API.md §8).
CREATE TABLE audit_events (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    agent_id   TEXT,
    kind       TEXT NOT NULL,
    result     TEXT,
    rule_code  TEXT,
    detail     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX audit_events_by_account ON audit_events(account_id, id);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
