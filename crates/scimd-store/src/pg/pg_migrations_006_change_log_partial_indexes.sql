-- A change log entry is written twice: appended unnumbered, then given its
-- position by the sequencer (an update of an indexed column, so a new row
-- version with new entries in every index). Only the unnumbered index is
-- needed the first time, and only the position's indexes the second: each
-- index is partial on one side of `position IS NULL`, and the primary key
-- on `id` (used only to find unnumbered rows, which that index does) goes.
-- Half the index entries per change (issue 18).
ALTER TABLE change_log DROP CONSTRAINT change_log_pkey;
ALTER TABLE change_log DROP CONSTRAINT change_log_position_key;
DROP INDEX change_log_resource;
DROP INDEX change_log_at;
CREATE UNIQUE INDEX change_log_position ON change_log (position) WHERE position IS NOT NULL;
CREATE INDEX change_log_resource ON change_log (resource_id, position) WHERE position IS NOT NULL;
CREATE INDEX change_log_at ON change_log (at) WHERE position IS NOT NULL;
