-- Server-managed facts (id, meta.*) are read from the resource row's
-- columns (translate.rs, MetaColumn); their index entries are deleted
-- before this runs (sqlite.rs, drop_meta_index_rows, in slices). Timestamps
-- get indexes for meta.created / meta.lastModified filters and sorting.
CREATE INDEX resources_created ON resources (created);
CREATE INDEX resources_modified ON resources (modified);
