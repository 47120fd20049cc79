-- Index rows and unique values are written only by scimd, in the
-- transaction that writes or deletes their resource, after the resource's
-- row is locked (it is inserted or updated first): the foreign keys checked
-- nothing that could fail, at the cost of one trigger call per row (a
-- user's ~32 index rows on every write). Deletes remove them explicitly.
ALTER TABLE attr_values DROP CONSTRAINT IF EXISTS attr_values_seq_fkey;
ALTER TABLE unique_values DROP CONSTRAINT IF EXISTS unique_values_seq_fkey;
