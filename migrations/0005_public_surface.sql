-- The public surface (issue 14, SPEC §11): project settings that decide what the public api
-- token may do, and per-project signing keys for signed contexts.
--
-- ingestion_creates_group_types: whether ingestion (public token) may create a group type the
-- project does not have. New projects are created with 0 (store/projects.py); projects that
-- exist when this migration runs keep what they did (1), so an upgrade drops nothing.
-- client_properties: how a decide request's person/group properties meet the stored ones:
-- 'override' (request wins, the behaviour before), 'fill' (stored wins), 'ignore'.
-- require_signed_groups: decide uses a request's groups only when they carry a valid
-- signature by one of the project's live signing keys.

ALTER TABLE projects ADD COLUMN ingestion_creates_group_types INTEGER NOT NULL DEFAULT 1;
ALTER TABLE projects ADD COLUMN client_properties TEXT NOT NULL DEFAULT 'override'
    CHECK (client_properties IN ('override', 'fill', 'ignore'));
ALTER TABLE projects ADD COLUMN require_signed_groups INTEGER NOT NULL DEFAULT 0;

-- Kept in clear (an HMAC is verified with the key itself), like hash_salt; shown once when
-- created, then only its prefix. A rotated key keeps working until expires_at (grace).
CREATE TABLE signing_keys (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    key TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL
);
CREATE INDEX signing_keys_project ON signing_keys(project_id);
