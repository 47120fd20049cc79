-- Index values clustered by resource: the table's key is (seq, key, ord),
-- so the rows of one resource sit together and are read and rewritten with
-- one range scan, and the separate (seq, key) index goes (one B-tree insert
-- fewer per value: nine per user). `ord` only tells apart values of one
-- attribute of one resource; the old rowid serves.
CREATE TABLE attr_values_by_resource (
  seq INTEGER NOT NULL REFERENCES resources(seq) ON DELETE CASCADE,
  key TEXT NOT NULL,
  ord INTEGER NOT NULL,
  elem INTEGER NOT NULL,
  prim INTEGER NOT NULL,
  s TEXT,
  n REAL,
  PRIMARY KEY (seq, key, ord)
) WITHOUT ROWID;
INSERT INTO attr_values_by_resource (seq, key, ord, elem, prim, s, n)
  SELECT seq, key, rowid, elem, prim, s, n FROM attr_values ORDER BY seq, key, rowid;
DROP TABLE attr_values;
ALTER TABLE attr_values_by_resource RENAME TO attr_values;
CREATE INDEX attr_values_s ON attr_values(key, s, seq);
CREATE INDEX attr_values_n ON attr_values(key, n, seq) WHERE n IS NOT NULL;
