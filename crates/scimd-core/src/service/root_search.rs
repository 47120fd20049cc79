//! A filter or `sortBy` read by several resource types at once (a search
//! at the root, or over the types of one request).

use std::sync::Arc;

use serde_json::Value;

use crate::error::{ScimError, ScimResult};
use crate::query::Cond;
use crate::schema::ResourceTypeDef;

/// `sortBy` of a search over several types. Every type that has the
/// attribute must accept it (one that hides it, or holds it as a membership,
/// refuses the whole search); the first such type's key is used. Core keys
/// are unqualified, so a URN-qualified core path (`...:Group:displayName`)
/// also sorts the other types by their own attribute of that name.
pub(super) fn sort_for_all(
    types: &[Arc<ResourceTypeDef>],
    sort_by: &str,
    descending: bool,
) -> ScimResult<crate::query::SortKey> {
    let path = scimd_filter::parse_attr_path(sort_by)
        .map_err(|e| ScimError::InvalidValue(format!("sortBy: {e}")))?;
    let mut key = None;
    let mut first_error = None;
    for rt in types {
        match crate::query::resolve_sort(rt, sort_by, descending) {
            Ok(k) => {
                key.get_or_insert(k);
            }
            Err(e) if rt.resolve(&path).is_ok() => return Err(e),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    key.ok_or_else(|| first_error.unwrap_or_else(|| ScimError::Internal("no resource type".into())))
}

/// For root searches a filter must make sense for at least one type
/// searched; a path one type does not have matches nothing there. When the
/// types read the filter differently (a URN-qualified path names one type's
/// schema), each type's condition is bound to that type.
pub(super) fn resolve_for_all(
    types: &[Arc<ResourceTypeDef>],
    filter: &scimd_filter::Filter,
) -> ScimResult<Cond> {
    let mut first_error = None;
    let mut strictly = false;
    let mut per_type: Vec<(&Arc<ResourceTypeDef>, Cond)> = Vec::new();
    for rt in types {
        match crate::query::resolve_list_filter(rt, filter, false) {
            Ok(cond) => {
                strictly = true;
                per_type.push((rt, cond));
                continue;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        // Type errors (`meta.created gt 5`) stay errors; unknown paths do not.
        match crate::query::resolve_list_filter(rt, filter, true) {
            Ok(cond) => per_type.push((rt, cond)),
            Err(e) => return Err(e),
        }
    }
    if !strictly {
        return Err(first_error.unwrap_or_else(|| ScimError::Internal("no resource type".into())));
    }
    let Some((_, first)) = per_type.first() else {
        return Err(ScimError::Internal("no resource type".into()));
    };
    if per_type.iter().all(|(_, c)| c == first) {
        return Ok(first.clone());
    }
    let mut any: Option<Cond> = None;
    // A type that has none of the filter's paths adds nothing.
    let never = Cond::never();
    for (rt, cond) in per_type.into_iter().filter(|(_, c)| *c != never) {
        let of_type = crate::query::resolve_filter(
            rt,
            &scimd_filter::Filter::Compare {
                path: scimd_filter::AttrPath {
                    urn: None,
                    name: "meta".into(),
                    sub: Some("resourceType".into()),
                },
                op: scimd_filter::CompareOp::Eq,
                value: Value::String(rt.name().to_string()),
            },
        )?;
        let bound = Cond::And(Box::new(of_type), Box::new(cond));
        any = Some(match any {
            None => bound,
            Some(prev) => Cond::Or(Box::new(prev), Box::new(bound)),
        });
    }
    Ok(any.unwrap_or(never))
}
