-- The change log (issue 18): one row per committed change, written in the
-- change's transaction. The single writer commits in rowid order, so the
-- position is commit order. Values never enter it, only attribute paths
-- (in `body`, with the request id, address and detail).
CREATE TABLE change_log (
  position INTEGER PRIMARY KEY AUTOINCREMENT,
  at TEXT NOT NULL,
  op TEXT NOT NULL,
  rtype TEXT NOT NULL,
  resource_id TEXT NOT NULL,
  version_before INTEGER,
  version_after INTEGER,
  client_id TEXT,
  subject TEXT,
  body TEXT NOT NULL
);
CREATE INDEX change_log_resource ON change_log (resource_id, position);
CREATE INDEX change_log_at ON change_log (at);
