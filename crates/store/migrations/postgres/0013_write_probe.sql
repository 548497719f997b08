-- Readiness writes this one row (and commits) to prove that the write path works.
CREATE TABLE write_probe (
    id         INTEGER PRIMARY KEY,
    checked_at TEXT NOT NULL
);
