//! Rules both stores apply the same way, stated once.

use scimd_core::store::{Member, ResourceWrite, StoreError, UniqueValue};

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

/// Why a conditional write found nothing to write, given the version the
/// resource is at (`None`: there is no such resource).
/// The stored text of a write's document (serialised from the map as it
/// is, not from a copy of it).
pub fn document_text(w: &ResourceWrite) -> Result<String, StoreError> {
    serde_json::to_string(&w.data).map_err(|e| StoreError::Backend(e.to_string()))
}

pub fn missed(current: Option<i64>) -> StoreError {
    match current {
        Some(current) => StoreError::VersionMismatch { current },
        None => StoreError::NotFound,
    }
}
