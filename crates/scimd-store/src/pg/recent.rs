//! What this process last wrote of a resource, so that its next change can
//! skip the read ([`GET_FOR_CHANGE`](super::reads::GET_FOR_CHANGE)): a PATCH
//! or a user's PUT is then one round trip, the compare-and-swap write
//! ([`UPDATE_CHANGED`](super::writes::UPDATE_CHANGED)).
//!
//! Nothing here is trusted. An entry is a resource's state at one version
//! (its document and side rows), and the write made from it succeeds only
//! if the resource is still at that position and version; versions only
//! grow, and a resource's side rows change only with its version. When it
//! was not (another process wrote, a restore, a delete), the write changes
//! nothing and the change is made again from a read, as without this.
//!
//! Several scimd processes writing the same resources (replicas behind a
//! load balancer) would make many entries stale, and each stale one costs
//! a wasted round trip. So the store watches how often the entry it holds
//! is the stored version (also when it reads anyway) and stops using
//! entries while fewer than three in four were ([`Freshness`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use scimd_core::store::{ResourceWrite, StoredResource, StoredRow};

use super::reads::StoredSide;
use crate::rules::unique_scope;

/// A resource as this process last wrote it: its row (the document as
/// text, parsed again for each change, as a read's is) and side rows.
pub(super) struct Known {
    pub(super) row: StoredRow,
    pub(super) side: StoredSide,
}

impl Known {
    /// The side rows the store holds right after `w` was written: exactly
    /// `w`'s ([`UPDATE_CHANGED`](super::writes::UPDATE_CHANGED) and the
    /// insert write them so).
    pub(super) fn side_of(w: &ResourceWrite) -> StoredSide {
        StoredSide {
            entries: w.index.clone(),
            unique: w
                .unique
                .iter()
                .map(|u| {
                    let scope = unique_scope(&w.resource_type, u).to_string();
                    (scope, u.key.clone(), u.value.clone())
                })
                .collect(),
        }
    }
}

pub(super) struct Recent {
    known: Mutex<HashMap<String, Arc<Known>>>,
    /// Most resources remembered (`recent_writes`; 0: none).
    capacity: usize,
    fresh: Freshness,
}

impl Recent {
    pub(super) fn new(capacity: usize) -> Recent {
        Recent {
            known: Mutex::default(),
            capacity,
            fresh: Freshness::default(),
        }
    }

    /// The entry of resource `id` of type `rtype`, when entries are worth
    /// using.
    pub(super) fn get(&self, rtype: &str, id: &str) -> Option<Arc<Known>> {
        if !self.fresh.worth_it() {
            return None;
        }
        self.peek(rtype, id)
    }

    fn peek(&self, rtype: &str, id: &str) -> Option<Arc<Known>> {
        let known = self.known.lock().ok()?;
        known
            .get(id)
            .filter(|k| k.row.resource_type == rtype)
            .cloned()
    }

    /// Remembers `resource`, just written with side rows `side` and its
    /// document stored as `text`; not a resource with members (their rows
    /// are not part of an entry).
    pub(super) fn wrote(&self, resource: &StoredResource, side: StoredSide, text: String) {
        if self.capacity == 0 || resource.members.is_some() {
            return;
        }
        self.put(Known {
            row: StoredRow {
                position: resource.position,
                resource_type: resource.resource_type.clone(),
                id: resource.id.clone(),
                version: resource.version,
                created: resource.created.clone(),
                modified: resource.modified.clone(),
                text,
            },
            side,
        });
    }

    /// Remembers `known`, forgetting an arbitrary other resource when full
    /// (a map's first key is as good as random).
    fn put(&self, known: Known) {
        let Ok(mut map) = self.known.lock() else {
            return;
        };
        if map.len() >= self.capacity
            && !map.contains_key(&known.row.id)
            && let Some(victim) = map.keys().next().cloned()
        {
            map.remove(&victim);
        }
        map.insert(known.row.id.clone(), Arc::new(known));
    }

    pub(super) fn forget(&self, id: &str) {
        if let Ok(mut map) = self.known.lock() {
            map.remove(id);
        }
    }

    /// An entry was used: its write found the resource at its version
    /// (`fresh`) or not.
    pub(super) fn used(&self, fresh: bool) {
        self.fresh.observe(fresh);
    }

    /// The resource `id` was read at position `seq` and `version`: whether
    /// the entry held (if any) was that one is counted, so that a store
    /// that stopped using entries starts again once they are fresh.
    pub(super) fn read(&self, rtype: &str, id: &str, seq: i64, version: i64) {
        if let Some(k) = self.peek(rtype, id) {
            let fresh = k.row.position == seq && k.row.version == version;
            self.fresh.observe(fresh);
            if !fresh {
                self.forget(id);
            }
        }
    }
}

/// A moving share of entries found fresh, in 1/1024ths: each observation
/// moves it a sixteenth of the way to 1 (fresh) or 0 (stale).
struct Freshness(AtomicU32);

const FULL: u32 = 1024;

impl Default for Freshness {
    fn default() -> Self {
        Freshness(AtomicU32::new(FULL))
    }
}

impl Freshness {
    fn observe(&self, fresh: bool) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some(s - s / 16 + if fresh { FULL / 16 } else { 0 })
            });
    }

    fn worth_it(&self) -> bool {
        self.0.load(Ordering::Relaxed) >= FULL * 3 / 4
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn user(id: &str, version: i64) -> StoredResource {
        StoredResource {
            position: 1,
            resource_type: "User".into(),
            id: id.into(),
            version,
            created: "2026-01-01T00:00:00Z".into(),
            modified: "2026-01-01T00:00:00Z".into(),
            data: serde_json::json!({"userName": id})
                .as_object()
                .unwrap()
                .clone(),
            members: None,
        }
    }

    /// `resource`'s document as the store writes it.
    fn text(resource: &StoredResource) -> String {
        serde_json::to_string(&resource.data).unwrap()
    }

    fn side() -> StoredSide {
        StoredSide {
            entries: Vec::new(),
            unique: Vec::new(),
        }
    }

    #[test]
    fn at_most_capacity_entries_are_kept_and_none_at_zero() {
        let recent = Recent::new(2);
        for id in ["a", "b", "c"] {
            let u = user(id, 1);
            recent.wrote(&u, side(), text(&u));
        }
        let kept = ["a", "b", "c"]
            .iter()
            .filter(|id| recent.get("User", id).is_some())
            .count();
        assert_eq!(kept, 2);
        assert!(recent.get("Group", "c").is_none(), "another type's id");
        let known = recent.get("User", "c").unwrap();
        assert_eq!(known.row.parse().unwrap().data, user("c", 1).data);

        let off = Recent::new(0);
        let a = user("a", 1);
        off.wrote(&a, side(), text(&a));
        assert!(off.get("User", "a").is_none());
    }

    #[test]
    fn entries_stop_being_used_when_most_are_stale_and_start_again_when_fresh() {
        let f = Freshness::default();
        assert!(f.worth_it());
        for _ in 0..8 {
            f.observe(false);
        }
        assert!(!f.worth_it());
        for _ in 0..40 {
            f.observe(true);
        }
        assert!(f.worth_it());
        // One stale in ten keeps them in use.
        for i in 0..200 {
            f.observe(i % 10 != 0);
        }
        assert!(f.worth_it());
    }
}
