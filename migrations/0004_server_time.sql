-- Events whose time is the server's receive time (the client sent no timestamp) are marked,
-- and their message ids are indexed on their own: a retry of such a message gets a new
-- receive time, possibly days later, so the (project, day, id) window of 0003 would not
-- catch it (store/ingest.py `_fresh`). Client-timed events — nearly all SDK traffic — are
-- not in this partial index, so it costs their ingestion nothing.
-- Events stored before this migration are all marked 0 (which were server-timed is not
-- known): they keep the day-window guarantee.

ALTER TABLE events ADD COLUMN server_time INTEGER NOT NULL DEFAULT 0;

CREATE INDEX events_server_time ON events(project_id, message_id) WHERE server_time = 1;
