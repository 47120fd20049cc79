-- As SQLite's migrations_003_meta_columns.sql: server-managed facts are
-- read from the resource row; timestamps compare in byte order.
DELETE FROM attr_values
 WHERE key IN ('id', 'meta', 'meta.resourcetype', 'meta.created', 'meta.lastmodified', 'meta.version');
CREATE INDEX resources_created ON resources ((created COLLATE "C"));
CREATE INDEX resources_modified ON resources ((modified COLLATE "C"));
