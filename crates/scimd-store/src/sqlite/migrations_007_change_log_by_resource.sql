-- The change log's index by resource, written by the writer in bulk (about
-- once a second, `change_log::Indexer`) instead of with each entry: an
-- index entry per write dirtied one more random page per commit, and cost
-- a tenth of write throughput. Entries past `through` are not in it yet;
-- a read by resource scans them (a second's worth at most).
CREATE TABLE change_log_by_resource (
  resource_id TEXT NOT NULL,
  position INTEGER NOT NULL,
  PRIMARY KEY (resource_id, position)
) WITHOUT ROWID;
CREATE TABLE change_log_indexed (through INTEGER NOT NULL);
INSERT INTO change_log_by_resource (resource_id, position)
  SELECT resource_id, position FROM change_log ORDER BY resource_id, position;
INSERT INTO change_log_indexed VALUES ((SELECT coalesce(max(position), 0) FROM change_log));
DROP INDEX change_log_resource;
