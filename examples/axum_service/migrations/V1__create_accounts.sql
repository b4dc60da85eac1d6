CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL CHECK (length(owner) BETWEEN 1 AND 100),
    email TEXT NOT NULL UNIQUE CHECK (email LIKE '%_@_%'),
    balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX accounts_by_owner ON accounts(owner, id);
