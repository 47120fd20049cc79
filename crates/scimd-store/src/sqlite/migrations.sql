CREATE TABLE resources (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  rtype TEXT NOT NULL,
  version INTEGER NOT NULL,
  created TEXT NOT NULL,
  modified TEXT NOT NULL,
  data TEXT NOT NULL
);
CREATE INDEX resources_type ON resources(rtype, seq);
CREATE TABLE attr_values (
  seq INTEGER NOT NULL REFERENCES resources(seq) ON DELETE CASCADE,
  key TEXT NOT NULL,
  elem INTEGER NOT NULL,
  prim INTEGER NOT NULL,
  s TEXT,
  n REAL
);
CREATE INDEX attr_values_s ON attr_values(key, s, seq);
CREATE INDEX attr_values_n ON attr_values(key, n, seq) WHERE n IS NOT NULL;
CREATE INDEX attr_values_res ON attr_values(seq, key);
CREATE TABLE unique_values (
  scope TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  seq INTEGER NOT NULL REFERENCES resources(seq) ON DELETE CASCADE,
  PRIMARY KEY (scope, key, value)
) WITHOUT ROWID;
CREATE INDEX unique_values_res ON unique_values(seq);
CREATE TABLE members (
  group_seq INTEGER NOT NULL REFERENCES resources(seq) ON DELETE CASCADE,
  member_seq INTEGER NOT NULL REFERENCES resources(seq) ON DELETE CASCADE,
  display TEXT,
  PRIMARY KEY (group_seq, member_seq)
) WITHOUT ROWID;
CREATE INDEX members_member ON members(member_seq, group_seq);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
