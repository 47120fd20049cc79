//! `GET /admin/v1/audit`: the change log for tools, with the filters of
//! `scimd audit` and cursor paging, behind the `audit.read` scope.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use scimd_core::ScimError;
use scimd_core::changelog::{AuditFilters, MAX_AUDIT_PAGE};
use serde_json::json;

use crate::{ApiError, AppState};

/// Entries per page when `count` is not given.
const DEFAULT_COUNT: u32 = 100;

/// The entries after `cursor` (oldest first) that match the filters, and
/// the cursor of the next page when this one is full.
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    match page(&state, params).await {
        Ok(body) => Json(body).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

async fn page(
    state: &AppState,
    mut params: BTreeMap<String, String>,
) -> Result<serde_json::Value, ScimError> {
    let mut take = |name: &str| params.remove(name);
    let filters = AuditFilters {
        resource_id: take("resourceId"),
        resource_type: take("resourceType"),
        actor: take("actor"),
        op: take("op"),
        since: take("since"),
        until: take("until"),
    };
    let after = take("cursor")
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|p| *p >= 0)
                .ok_or_else(|| ScimError::InvalidValue(format!("cursor '{c}' is not one of ours")))
        })
        .transpose()?;
    let count = take("count")
        .map(|c| {
            c.parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_AUDIT_PAGE).contains(n))
                .ok_or_else(|| {
                    ScimError::InvalidValue(format!(
                        "count '{c}': give a number from 1 to {MAX_AUDIT_PAGE}"
                    ))
                })
        })
        .transpose()?
        .unwrap_or(DEFAULT_COUNT);
    // A misspelt filter would otherwise widen the answer silently.
    if let Some(unknown) = params.keys().next() {
        return Err(ScimError::InvalidValue(format!(
            "unknown parameter '{unknown}'; the parameters are resourceId, resourceType, actor, op, since, until, cursor, count"
        )));
    }
    let query = filters
        .query(after, count)
        .map_err(ScimError::InvalidValue)?;
    let entries = state.service.store().changes(query).await?;
    let mut body = json!({ "entries": entries });
    if entries.len() == count as usize
        && let Some(last) = entries.last()
    {
        body["nextCursor"] = json!(last.position.to_string());
    }
    Ok(body)
}
