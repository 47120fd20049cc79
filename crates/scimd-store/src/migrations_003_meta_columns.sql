-- Server-managed facts (id, meta.*) are read from the resource row's
-- columns (translate.rs, MetaColumn); their index entries go. Timestamps
-- get indexes for meta.created / meta.lastModified filters and sorting.
DELETE FROM attr_values
 WHERE key IN ('id', 'meta', 'meta.resourcetype', 'meta.created', 'meta.lastmodified', 'meta.version');
CREATE INDEX resources_created ON resources (created);
CREATE INDEX resources_modified ON resources (modified);
