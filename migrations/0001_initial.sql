-- flagsvc initial schema. Times are Unix seconds (REAL); JSON columns hold objects.

CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    api_token TEXT NOT NULL UNIQUE,
    default_group_type TEXT NOT NULL DEFAULT 'organization',
    -- {"property key": "drop" | "hash"}: properties never stored as given
    private_properties TEXT NOT NULL DEFAULT '{}',
    -- keyed-hash secret for private properties stored as "hash"
    hash_salt TEXT NOT NULL,
    event_retention_days INTEGER NOT NULL DEFAULT 30,
    flags_rev INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);

-- Tokens are looked up by SHA-256; only the public api token is also kept in clear (projects).
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    kind TEXT NOT NULL CHECK (kind IN ('api', 'secret')),
    token_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL
);
CREATE INDEX tokens_project ON tokens(project_id, kind);

CREATE TABLE group_types (
    project_id INTEGER NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    idx INTEGER NOT NULL CHECK (idx BETWEEN 0 AND 4),
    created_at REAL NOT NULL,
    PRIMARY KEY (project_id, name),
    UNIQUE (project_id, idx)
);

CREATE TABLE groups (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    group_type TEXT NOT NULL,
    group_key TEXT NOT NULL,
    properties TEXT NOT NULL DEFAULT '{}',
    -- {"property key": event timestamp of its last write}: last-write-wins per key
    property_ts TEXT NOT NULL DEFAULT '{}',
    parent_key TEXT,
    parent_type TEXT,
    parent_ts REAL,
    created_at REAL NOT NULL,
    last_seen REAL,
    updated_at REAL NOT NULL,
    UNIQUE (project_id, group_type, group_key)
);
CREATE INDEX groups_parent ON groups(project_id, parent_key);
CREATE INDEX groups_key ON groups(project_id, group_key);

CREATE TABLE persons (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    properties TEXT NOT NULL DEFAULT '{}',
    property_ts TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    last_seen REAL,
    updated_at REAL NOT NULL
);

CREATE TABLE person_distinct_ids (
    project_id INTEGER NOT NULL REFERENCES projects(id),
    distinct_id TEXT NOT NULL,
    person_id INTEGER NOT NULL REFERENCES persons(id),
    PRIMARY KEY (project_id, distinct_id)
);
CREATE INDEX person_distinct_ids_person ON person_distinct_ids(person_id);

CREATE TABLE memberships (
    person_id INTEGER NOT NULL REFERENCES persons(id),
    group_id INTEGER NOT NULL REFERENCES groups(id),
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (person_id, group_id)
);
CREATE INDEX memberships_group ON memberships(group_id);

CREATE TABLE flags (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    key TEXT NOT NULL,
    definition TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    deleted_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (project_id, key)
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    flag_id INTEGER,
    flag_key TEXT,
    action TEXT NOT NULL,
    version INTEGER,
    before TEXT,
    after TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX audit_log_project ON audit_log(project_id, id);

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    event TEXT,
    distinct_id TEXT,
    groups TEXT,
    properties TEXT NOT NULL DEFAULT '{}',
    timestamp REAL NOT NULL,
    received_at REAL NOT NULL,
    UNIQUE (project_id, message_id)
);
CREATE INDEX events_received ON events(project_id, received_at);
