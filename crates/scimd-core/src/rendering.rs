//! Whole-document renderings kept for reuse.
//!
//! A `GET` without `attributes` or `excludedAttributes` answers the whole
//! document, which is a pure function of the stored row (document text,
//! version, timestamps), the computed groups and the base URL. Parsing,
//! rendering and serialising it is most of a point read's cost, so the last
//! rendering of each resource is kept with the row and groups it was made
//! from, and the store's commit stamp (`ResourceStore::commit_stamp`) taken
//! before that read. While the stamp has not moved, nothing was committed
//! since, so the rendering is served without reading the store at all;
//! once it moved, a fresh read that returns an equal row and equal groups
//! serves it again (and stamps it anew). Nothing is invalidated: a write
//! changes the row or the stamp, a membership or a group's name changes the
//! groups, and an entry that no longer matches is replaced at the next read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// The commit stamp taken before the last read that returned this row
    /// and these groups ([`NO_STAMP`]: none).
    stamp: AtomicU64,
}

/// An entry whose store gave no commit stamp: served only after a read.
const NO_STAMP: u64 = u64::MAX;

fn stamp_value(stamp: Option<u64>) -> u64 {
    stamp.filter(|s| *s != NO_STAMP).unwrap_or(NO_STAMP)
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

    /// Whether renderings are kept at all (a capacity above 0).
    pub fn keeps(&self) -> bool {
        self.entries.is_some()
    }

    /// The rendering of resource `id` of `resource_type`, if it was read at
    /// commit stamp `stamp`: nothing was committed since, so it is the
    /// current one, without a read.
    pub fn current(&self, resource_type: &str, id: &str, stamp: u64) -> Option<Rendered> {
        let entry = self.entries.as_ref()?.get(id)?;
        let fresh = stamp != NO_STAMP
            && entry.stamp.load(Ordering::SeqCst) == stamp
            && entry.row.resource_type == resource_type;
        fresh.then(|| entry.rendered.clone())
    }

    /// The rendering made from exactly this row and these groups, if kept;
    /// it is then stamped with `stamp`, taken before that row was read.
    pub fn get(
        &self,
        row: &StoredRow,
        groups: &[GroupMembership],
        stamp: Option<u64>,
    ) -> Option<Rendered> {
        let entry = self.entries.as_ref()?.get(row.id.as_str())?;
        if entry.row != *row || entry.groups != groups {
            return None;
        }
        entry.stamp.store(stamp_value(stamp), Ordering::SeqCst);
        Some(entry.rendered.clone())
    }

    /// Keeps `rendered`, made from `row` and `groups` read after commit
    /// stamp `stamp` was taken.
    pub fn put(
        &self,
        row: StoredRow,
        groups: Vec<GroupMembership>,
        rendered: &Rendered,
        stamp: Option<u64>,
    ) {
        if let Some(entries) = &self.entries {
            let id = row.id.clone();
            let rendered = rendered.clone();
            entries.insert(
                id,
                Arc::new(Entry {
                    row,
                    groups,
                    rendered,
                    stamp: AtomicU64::new(stamp_value(stamp)),
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
        cache.put(row("{}", 1), Vec::new(), &rendered("a"), None);
        assert_eq!(cache.get(&row("{}", 1), &[], None).unwrap().body, "a");
        // Same version, other text (a restore that kept the version): not served.
        assert!(cache.get(&row("{\"x\":1}", 1), &[], None).is_none());
        assert!(cache.get(&row("{}", 2), &[], None).is_none());
        let group = GroupMembership {
            group_id: "g".into(),
            display: Some("G".into()),
            direct: true,
        };
        assert!(cache.get(&row("{}", 1), &[group], None).is_none());
    }

    #[test]
    fn serves_without_a_read_only_at_the_same_stamp_and_type() {
        let cache = RenderCache::new(8);
        cache.put(row("{}", 1), Vec::new(), &rendered("a"), Some(7));
        assert_eq!(cache.current("User", "u1", 7).unwrap().body, "a");
        assert!(cache.current("User", "u1", 8).is_none(), "a commit since");
        assert!(cache.current("Group", "u1", 7).is_none(), "another type");
        // A read at stamp 8 that finds the same row stamps it anew.
        assert!(cache.get(&row("{}", 1), &[], Some(8)).is_some());
        assert!(cache.current("User", "u1", 8).is_some());
        // A store without stamps never serves without a read.
        cache.put(row("{}", 1), Vec::new(), &rendered("a"), None);
        assert!(cache.current("User", "u1", NO_STAMP).is_none());
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let cache = RenderCache::new(0);
        cache.put(row("{}", 1), Vec::new(), &rendered("a"), Some(1));
        assert!(cache.get(&row("{}", 1), &[], Some(1)).is_none());
        assert!(cache.current("User", "u1", 1).is_none());
    }
}
