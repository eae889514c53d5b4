-- A log of group and person property changes, appended by ingestion (in commit order:
-- writers are serialised), read by every worker to evict exactly what changed from its
-- property cache instead of expiring everything every few hundred milliseconds.

CREATE TABLE changes (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('group', 'person')),
    group_type TEXT,
    key TEXT NOT NULL,
    created_at REAL NOT NULL
);
