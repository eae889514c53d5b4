-- PostgreSQL only (issue 19): ingestion batches of several nodes insert groups and persons
-- side by side and take the new rows' ids from the tables' sequences (store/concurrent.py);
-- until now they were MAX(id) + 1 under the writers' lock, which left the sequences behind.

SELECT setval(pg_get_serial_sequence('groups', 'id'), COALESCE(MAX(id), 0) + 1, false)
FROM groups;
SELECT setval(pg_get_serial_sequence('persons', 'id'), COALESCE(MAX(id), 0) + 1, false)
FROM persons;
