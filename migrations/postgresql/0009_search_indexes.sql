-- PostgreSQL only (issue 19): indexes that keep the admin's group search usable at a
-- million groups. Property filters (GET /api/groups?properties.plan=...) are `properties @>`
-- (store/pg.py), served by a GIN index; the key search (`search=`, a substring) by a
-- trigram index (`LIKE '%...%'`). SQLite answers both by scanning the project's groups.

-- The extension lives in the database's public schema (one per database, whatever schema
-- flagsvc's tables are in), hence the qualified operator class.

CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
CREATE INDEX groups_properties ON groups USING gin (properties jsonb_path_ops);
CREATE INDEX groups_key_trgm ON groups USING gin (group_key public.gin_trgm_ops);
