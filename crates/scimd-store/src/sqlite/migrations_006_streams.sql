-- Event streams' progress through the change log (issue 18); their
-- settings are operational records (kind 'stream').
CREATE TABLE streams (
  id TEXT PRIMARY KEY,
  through INTEGER NOT NULL,
  acked TEXT NOT NULL,
  push TEXT NOT NULL,
  version INTEGER NOT NULL,
  lease_owner TEXT,
  lease_until INTEGER
);
