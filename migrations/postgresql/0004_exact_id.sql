-- Client ids sent without a timestamp are unique over all stored events (../0004_exact_id.sql).

ALTER TABLE events ADD COLUMN exact_id INTEGER NOT NULL DEFAULT 0;
CREATE INDEX events_exact_id ON events(project_id, message_id) WHERE exact_id = 1;
