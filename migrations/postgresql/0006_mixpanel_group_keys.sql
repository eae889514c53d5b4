-- Mixpanel group keys mapped to group types (../0006_mixpanel_group_keys.sql).
ALTER TABLE projects ADD COLUMN mixpanel_group_keys TEXT NOT NULL DEFAULT '{}';
