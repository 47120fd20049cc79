-- Event streams' progress through the change log (issue 18); their
-- settings are operational records (kind 'stream').
CREATE TABLE streams (
  id TEXT PRIMARY KEY,
  through BIGINT NOT NULL,
  acked TEXT NOT NULL,
  push TEXT NOT NULL,
  version BIGINT NOT NULL,
  lease_owner TEXT,
  lease_until BIGINT
);
