-- The web console (issue 17): people who sign in, their sessions, and who made each change.
-- Portable SQL (the PostgreSQL twin uses the same statements with its own id columns).

-- Who made an audited change: "user <email>", "secret key <prefix>", "cli", or NULL (before 0007).
ALTER TABLE audit_log ADD COLUMN actor TEXT;

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,              -- stored lower-cased
    password_hash TEXT NOT NULL,             -- argon2id (argon2-cffi's encoded form)
    role TEXT NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    all_projects INTEGER NOT NULL DEFAULT 1, -- 0: only the projects of user_projects
    must_change_password INTEGER NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until REAL,
    disabled_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE user_projects (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, project_id)
);

CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,         -- sha256 of the cookie value
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    project_id INTEGER REFERENCES projects(id) ON DELETE SET NULL,
    created_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
