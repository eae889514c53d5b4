-- Message ids de-duplicate within a window of UTC days around the event's time
-- (../0003_dedupe_window.sql). PostgreSQL can drop a constraint in place: no rebuild.
-- floor() as SQLite's CAST truncates (timestamps are positive); PostgreSQL's CAST rounds.

ALTER TABLE events DROP CONSTRAINT events_project_id_message_id_key;
ALTER TABLE events ADD COLUMN day INTEGER
    GENERATED ALWAYS AS (floor(timestamp / 86400)::integer) STORED;
CREATE UNIQUE INDEX events_dedupe ON events(project_id, day, message_id);
