-- PostgreSQL only (issue 19): the trigram index of the key search on an expression that
-- only the search names. pg_trgm's operator class also serves `=`, and with statistics the
-- planner took groups_key_trgm for the `group_key = ANY(...)` lookups of every ingestion
-- batch: a GIN scan of every key sharing the trigrams "org", "rg-", ... (1 s per 100-event
-- batch at 20,000 groups, against 0.5 ms through the btree groups_key). On
-- `(group_key || '')` the index still serves `(group_key || '') LIKE '%...%'` (pgstore.py)
-- and nothing else.

DROP INDEX groups_key_trgm;
CREATE INDEX groups_key_search ON groups USING gin ((group_key || '') public.gin_trgm_ops);
