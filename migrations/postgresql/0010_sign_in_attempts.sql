-- Failed sign-ins counted in the database per (email, address), per address and per email
-- (../0010_sign_in_attempts.sql says how they are used).

CREATE TABLE sign_in_attempts (
    email TEXT NOT NULL,
    address TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    since DOUBLE PRECISION NOT NULL,
    blocked_until DOUBLE PRECISION,
    succeeded_at DOUBLE PRECISION,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (email, address)
);
CREATE INDEX sign_in_attempts_expiry ON sign_in_attempts(expires_at);

-- users.failed_logins / users.locked_until are no longer read or written, but stay: nodes of
-- the previous release still use them during a rolling upgrade (migrations are additive;
-- README "Rolling deploys"). A later release drops them.
