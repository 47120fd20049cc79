-- The change log (issue 18): one row per committed change, written in the
-- change's transaction. `id` comes from a sequence, whose values are not
-- commit order (a transaction may commit after one that took a larger id);
-- `position` is: the sequencer (`number_committed` in `pg/change_log.rs`) numbers committed rows
-- in one transaction at a time, serialised on the `change_head` row, so a
-- reader of "every entry after position N" never skips one that commits
-- late. Values never enter the log, only attribute paths (in `body`).
CREATE TABLE change_log (
  id BIGSERIAL PRIMARY KEY,
  position BIGINT UNIQUE,
  at TEXT NOT NULL,
  op TEXT NOT NULL,
  rtype TEXT NOT NULL,
  resource_id TEXT NOT NULL,
  version_before BIGINT,
  version_after BIGINT,
  client_id TEXT,
  subject TEXT,
  body TEXT NOT NULL
);
CREATE INDEX change_log_unnumbered ON change_log (id) WHERE position IS NULL;
CREATE INDEX change_log_resource ON change_log (resource_id, position);
CREATE INDEX change_log_at ON change_log (at);
CREATE TABLE change_head (
  one INT PRIMARY KEY CHECK (one = 1),
  position BIGINT NOT NULL
);
INSERT INTO change_head (one, position) VALUES (1, 0);
