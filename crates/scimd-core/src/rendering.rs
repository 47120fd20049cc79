//! Whole-document renderings kept for reuse.
//!
//! A `GET` without `attributes` or `excludedAttributes` answers the whole
//! document, which is a pure function of the stored row (document text,
//! version, timestamps), the computed groups and the base URL. Parsing,
//! rendering and serialising it is most of a point read's cost, so the last
//! rendering of each resource is kept with the row and groups it was made
//! from, and served again when a fresh read returns an equal row and equal
//! groups. Nothing is invalidated: a write changes the row, a membership or
//! a group's name changes the groups, and an entry that no longer matches is
//! replaced at the next read. The read itself always happens.

use std::sync::Arc;

use bytes::Bytes;

use crate::store::{GroupMembership, StoredRow};

/// A rendered document and its entity tag.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub tag: String,
    pub body: Bytes,
}

struct Entry {
    row: StoredRow,
    groups: Vec<GroupMembership>,
    rendered: Rendered,
}

/// Renderings by resource id, at most `capacity` of them (evicted by
/// quick_cache's policy, which keeps the frequently read ones).
pub struct RenderCache {
    entries: Option<quick_cache::sync::Cache<String, Arc<Entry>>>,
}

impl RenderCache {
    /// A cache of `capacity` renderings; 0 turns it off.
    pub fn new(capacity: usize) -> RenderCache {
        RenderCache {
            entries: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
        }
    }

    /// The rendering made from exactly this row and these groups, if kept.
    pub fn get(&self, row: &StoredRow, groups: &[GroupMembership]) -> Option<Rendered> {
        let entry = self.entries.as_ref()?.get(row.id.as_str())?;
        (entry.row == *row && entry.groups == groups).then(|| entry.rendered.clone())
    }

    /// Keeps `rendered`, made from `row` and `groups`.
    pub fn put(&self, row: StoredRow, groups: Vec<GroupMembership>, rendered: &Rendered) {
        if let Some(entries) = &self.entries {
            let id = row.id.clone();
            let rendered = rendered.clone();
            entries.insert(
                id,
                Arc::new(Entry {
                    row,
                    groups,
                    rendered,
                }),
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(text: &str, version: i64) -> StoredRow {
        StoredRow {
            position: 1,
            resource_type: "User".into(),
            id: "u1".into(),
            version,
            created: "c".into(),
            modified: "m".into(),
            text: text.into(),
        }
    }

    fn rendered(body: &'static str) -> Rendered {
        Rendered {
            tag: "W/\"1\"".into(),
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn serves_only_what_was_made_from_an_equal_row_and_groups() {
        let cache = RenderCache::new(8);
        cache.put(row("{}", 1), Vec::new(), &rendered("a"));
        assert_eq!(cache.get(&row("{}", 1), &[]).unwrap().body, "a");
        // Same version, other text (a restore that kept the version): not served.
        assert!(cache.get(&row("{\"x\":1}", 1), &[]).is_none());
        assert!(cache.get(&row("{}", 2), &[]).is_none());
        let group = GroupMembership {
            group_id: "g".into(),
            display: Some("G".into()),
            direct: true,
        };
        assert!(cache.get(&row("{}", 1), &[group]).is_none());
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let cache = RenderCache::new(0);
        cache.put(row("{}", 1), Vec::new(), &rendered("a"));
        assert!(cache.get(&row("{}", 1), &[]).is_none());
    }
}
