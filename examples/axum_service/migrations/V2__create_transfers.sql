-- No ON DELETE: an account with transfers cannot be deleted (HTTP 409).
CREATE TABLE transfers (
    id INTEGER PRIMARY KEY,
    from_id INTEGER NOT NULL REFERENCES accounts(id),
    to_id INTEGER NOT NULL REFERENCES accounts(id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (from_id <> to_id)
);
CREATE INDEX transfers_by_from ON transfers(from_id);
CREATE INDEX transfers_by_to ON transfers(to_id);
