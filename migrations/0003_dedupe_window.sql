-- Message ids de-duplicate within a window around the event's time instead of over the
-- whole table (store/ingest.py: same UTC day of the event timestamp or an adjacent one, so a
-- resend up to 24 hours apart is always caught). The unique key becomes (project, day, id):
-- the index pages an ingesting writer touches are those of the current day, however many
-- events are stored — with one key over all of them, every uuid4 id landed on a random page
-- of an index that grows with the table (bench/RESULTS.md, target 4).
-- SQLite cannot drop the index of a UNIQUE constraint, so the table is rebuilt (a one-time
-- copy; the ids are kept).
-- requires: foreign_key_check events

CREATE TABLE events_new (
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
    -- UTC day of the event timestamp (Unix days), the first part of the de-duplication key
    day INTEGER GENERATED ALWAYS AS (CAST(timestamp / 86400 AS INTEGER)) VIRTUAL
);

INSERT INTO events_new (id, project_id, message_id, type, event, distinct_id, groups,
                        properties, timestamp, received_at)
SELECT id, project_id, message_id, type, event, distinct_id, groups, properties, timestamp,
       received_at
FROM events ORDER BY id;

DROP TABLE events;

ALTER TABLE events_new RENAME TO events;

CREATE UNIQUE INDEX events_dedupe ON events(project_id, day, message_id);

CREATE INDEX events_received ON events(project_id, received_at);
