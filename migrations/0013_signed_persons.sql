-- require_signed_persons (issue 14, second attack run): decide reads a request's stored
-- person (properties) only when its distinct_id carries a valid signature of
-- {distinct_id, groups} by a live signing key; otherwise the request is answered from what
-- it claims alone, so guessing ids learns nothing about who exists or what is stored.

ALTER TABLE projects ADD COLUMN require_signed_persons INTEGER NOT NULL DEFAULT 0;
