-- Project setting require_signed_persons (../0013_signed_persons.sql).

ALTER TABLE projects ADD COLUMN require_signed_persons INTEGER NOT NULL DEFAULT 0;
