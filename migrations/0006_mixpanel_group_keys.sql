-- Mixpanel group keys (a `$group_key` / event property such as `company_id`) mapped to the
-- project's group types: {"company_id": "organization"}. Empty: a key is its own type name.
ALTER TABLE projects ADD COLUMN mixpanel_group_keys TEXT NOT NULL DEFAULT '{}';
