-- Events whose message id must be unique among all of the project's stored events, not only
-- within the day window of 0003: `exact_id` = 1 for a message that came with a client
-- message id but without a timestamp (store/ingest.py `_fresh`). Its time is the receive
-- time, which moves with every retry, so the day window would miss a retry two or more days
-- later — and a client that gave an id meant that id to name one message. Such ids get a
-- partial index of their own; client-timed events are not in it and pay nothing for it.
-- posthog-js sends every batched event this way (`offset` instead of `timestamp`, with a
-- UUIDv7 id, time-ordered: its index entries append rather than land on random pages).
-- Events stored before this migration are all 0 (which were untimed is not known): they
-- keep the day-window guarantee.

ALTER TABLE events ADD COLUMN exact_id INTEGER NOT NULL DEFAULT 0;

CREATE INDEX events_exact_id ON events(project_id, message_id) WHERE exact_id = 1;
