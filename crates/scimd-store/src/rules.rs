//! Rules both stores apply the same way, stated once.

use scimd_core::store::{IndexEntry, Member, ResourceWrite, StoreError, UniqueValue};

/// The scope a unique value is unique in: its resource type, or `*` for
/// values unique across the server.
pub fn unique_scope<'a>(resource_type: &'a str, u: &'a UniqueValue) -> &'a str {
    if u.global { "*" } else { resource_type }
}

/// Whether `m`, found in the store with resource type `found`, may be a
/// member: its type is one of `types`, and the type the client sent (if
/// any) names it, in any case.
pub fn member_type_ok(types: &[String], found: &str, m: &Member) -> bool {
    types.iter().any(|t| t == found) && m.typ.as_ref().is_none_or(|t| t.eq_ignore_ascii_case(found))
}

/// The stored text of a write's document (serialised from the map as it
/// is, not from a copy of it).
pub fn document_text(w: &ResourceWrite) -> Result<String, StoreError> {
    serde_json::to_string(&w.data).map_err(|e| StoreError::Backend(e.to_string()))
}

/// Why a conditional write found nothing to write, given the version the
/// resource is at (`None`: there is no such resource).
pub fn missed(current: Option<i64>) -> StoreError {
    match current {
        Some(current) => StoreError::VersionMismatch { current },
        None => StoreError::NotFound,
    }
}

/// Every column of an index entry, the number by its bits: what two entries
/// are compared by.
type EntryKey<'a> = (&'a str, u32, bool, Option<&'a str>, Option<u64>);

fn entry_key(e: &IndexEntry) -> EntryKey<'_> {
    (
        e.key.as_str(),
        e.elem,
        e.primary,
        e.text.as_deref(),
        e.number.map(f64::to_bits),
    )
}

/// How a resource's stored index entries (`old`, each with where the store
/// keeps it) differ from those a write needs (`new`), as multisets: those
/// to remove and those to add. A one-attribute change is one of each, not a
/// rewrite of the ~32 entries of a user. Sorted lists merged, not hash
/// maps: a resource has a few dozen entries (hashing showed in the SQLite
/// writer's profile).
pub fn entry_delta<'a, T>(
    mut old: Vec<(T, &'a IndexEntry)>,
    new: &'a [IndexEntry],
) -> (Vec<(T, &'a IndexEntry)>, Vec<&'a IndexEntry>) {
    let mut new: Vec<&IndexEntry> = new.iter().collect();
    new.sort_unstable_by(|a, b| entry_key(a).cmp(&entry_key(b)));
    old.sort_unstable_by(|a, b| entry_key(a.1).cmp(&entry_key(b.1)));
    let (mut gone, mut added) = (Vec::new(), Vec::new());
    let (mut o, mut n) = (old.into_iter().peekable(), new.into_iter().peekable());
    loop {
        match (o.peek(), n.peek()) {
            (Some((_, a)), Some(b)) => match entry_key(a).cmp(&entry_key(b)) {
                std::cmp::Ordering::Equal => {
                    o.next();
                    n.next();
                }
                std::cmp::Ordering::Less => gone.extend(o.next()),
                std::cmp::Ordering::Greater => added.extend(n.next()),
            },
            (Some(_), None) => gone.extend(o.next()),
            (None, Some(_)) => added.extend(n.next()),
            (None, None) => break,
        }
    }
    (gone, added)
}

/// A stored unique value: scope, key, value.
pub type StoredUnique = (String, String, String);

/// How a resource's stored unique values (`old`) differ from those `w`
/// needs: those to remove and those to add.
pub fn unique_delta<'a, 'o>(
    old: &'o [StoredUnique],
    w: &'a ResourceWrite,
) -> (Vec<&'o StoredUnique>, Vec<&'a UniqueValue>) {
    let same = |(scope, key, value): &StoredUnique, u: &UniqueValue| {
        u.key == *key && u.value == *value && unique_scope(&w.resource_type, u) == scope
    };
    let gone = old
        .iter()
        .filter(|o| !w.unique.iter().any(|u| same(o, u)))
        .collect();
    let added = w
        .unique
        .iter()
        .filter(|u| !old.iter().any(|o| same(o, u)))
        .collect();
    (gone, added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, elem: u32, text: &str) -> IndexEntry {
        IndexEntry {
            key: key.into(),
            elem,
            primary: false,
            text: Some(text.into()),
            number: None,
        }
    }

    #[test]
    fn entry_delta_is_a_multiset_difference() {
        let (x, y, z) = (entry("a", 0, "x"), entry("a", 1, "y"), entry("b", 0, "z"));
        // Stored: x twice and y; wanted: x once and z.
        let old = vec![(1, &x), (2, &y), (3, &x)];
        let new = [z.clone(), x.clone()];
        let (gone, added) = entry_delta(old, &new);
        let mut gone: Vec<(i32, &str)> = gone
            .iter()
            .map(|(at, e)| (*at, e.text.as_deref().unwrap_or_default()))
            .collect();
        gone.sort();
        // One of the two x goes (either), and y.
        assert_eq!(gone.len(), 2, "{gone:?}");
        assert!(gone.iter().any(|(_, t)| *t == "x") && gone.iter().any(|(_, t)| *t == "y"));
        assert_eq!(added, vec![&z]);
        // Equal lists in any order: nothing to do.
        let old = vec![((), &y), ((), &x)];
        let new = [x.clone(), y.clone()];
        let (gone, added) = entry_delta(old, &new);
        assert!(gone.is_empty() && added.is_empty());
    }
}
