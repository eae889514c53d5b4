-- Failed sign-ins counted in the database (issue 17 review), shared by every worker and
-- node and kept across restarts, instead of a lock on the account (anyone who knew an email
-- could keep it locked) and a per-worker count of addresses. One row per
--   (email, address): that client's failures at that email — the lock is theirs alone;
--   ('', address):    an address's failures at any email (a password spray);
--   (email, ''):      an email's failures from every address (a distributed guesser), which
--                     paces the password checks of the email from unfamiliar addresses.
-- Emails are stored lower-cased (unknown ones too: the answers never tell which exist).
-- Rows whose expires_at has passed are deleted (flagsvc.store.users).

CREATE TABLE sign_in_attempts (
    email TEXT NOT NULL,
    address TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    since REAL NOT NULL,          -- the first failure counted in `failures`
    blocked_until REAL,           -- no check before (a lock, or the next paced check)
    succeeded_at REAL,            -- (email, address): last good sign-in from there
    expires_at REAL NOT NULL,
    PRIMARY KEY (email, address)
);
CREATE INDEX sign_in_attempts_expiry ON sign_in_attempts(expires_at);

-- users.failed_logins / users.locked_until are no longer read or written, but stay: nodes of
-- the previous release still use them during a rolling upgrade (migrations are additive;
-- README "Rolling deploys"). A later release drops them.
