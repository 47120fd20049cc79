-- The SQLite tables (migrations.sql, migrations_002_records.sql) in
-- PostgreSQL types. Text that filters compare is in the "C" collation: byte
-- order, as SQLite's BINARY, whatever the database's default locale.
CREATE TABLE resources (
  seq BIGSERIAL PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  rtype TEXT NOT NULL,
  version BIGINT NOT NULL,
  created TEXT NOT NULL,
  modified TEXT NOT NULL,
  data TEXT NOT NULL
);
CREATE INDEX resources_type ON resources (rtype, seq);
CREATE TABLE attr_values (
  seq BIGINT NOT NULL REFERENCES resources (seq) ON DELETE CASCADE,
  key TEXT COLLATE "C" NOT NULL,
  elem BIGINT NOT NULL,
  prim BOOLEAN NOT NULL,
  s TEXT COLLATE "C",
  n DOUBLE PRECISION
);
-- A prefix only: B-tree entries are limited to ~2.7 kB (translate.rs,
-- PG_INDEXED_PREFIX, must say 256 too).
CREATE INDEX attr_values_s ON attr_values (key, left(s, 256), seq);
CREATE INDEX attr_values_n ON attr_values (key, n, seq) WHERE n IS NOT NULL;
CREATE INDEX attr_values_res ON attr_values (seq, key);
CREATE TABLE unique_values (
  scope TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  seq BIGINT NOT NULL REFERENCES resources (seq) ON DELETE CASCADE,
  PRIMARY KEY (scope, key, value)
);
CREATE INDEX unique_values_res ON unique_values (seq);
CREATE TABLE members (
  group_seq BIGINT NOT NULL REFERENCES resources (seq) ON DELETE CASCADE,
  member_seq BIGINT NOT NULL REFERENCES resources (seq) ON DELETE CASCADE,
  display TEXT,
  PRIMARY KEY (group_seq, member_seq)
);
CREATE INDEX members_member ON members (member_seq, group_seq);
CREATE TABLE records (
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY (kind, id)
);
