//! `POST /Bulk` (RFC 7644 section 3.7): the body read under the bulk size
//! limit, each operation checked against the token's scopes, the core's
//! outcomes rendered as a BulkResponse.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use scimd_auth::{Denied, Grant, Need};
use scimd_core::ScimError;
use scimd_core::bulk::{BULK_RESPONSE, BulkOutcome, parse_request, run};
use serde_json::{Map, Value, json};

use crate::error::error_body;
use crate::resources::scim_json;
use crate::{ApiError, AppState};

pub async fn bulk(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let grant = request
        .extensions()
        .get::<Option<Arc<Grant>>>()
        .cloned()
        .flatten();
    let config = state.service.config();
    let limit = config.bulk_max_payload;
    crate::extract::check_sender(request.headers(), &state.public_base)?;
    let bytes =
        crate::extract::body_within(request, limit, "the bulk request (maxPayloadSize)").await?;
    let body: Value = crate::extract::parse_json(&bytes)?;
    let parsed = parse_request(&state.service, &body, config.bulk_max_operations)?;
    let auth = state.auth.clone();
    // Every Bulk operation is a write: it needs its type's write scope,
    // refused for that operation only.
    let outcomes = run(&state.service, parsed, move |rt| {
        match auth.allows(grant.as_deref(), Need::Write, Some(rt.endpoint())) {
            Ok(()) => Ok(()),
            Err(Denied::Insufficient(scope)) => Err(ScimError::Forbidden(format!(
                "the token lacks the scope {scope}"
            ))),
            Err(_) => Err(ScimError::Forbidden(
                "the token may not run this operation".into(),
            )),
        }
    })
    .await;
    let operations: Vec<Value> = outcomes.iter().map(render).collect();
    Ok(scim_json(
        StatusCode::OK,
        &json!({ "schemas": [BULK_RESPONSE], "Operations": operations }),
    ))
}

fn render(outcome: &BulkOutcome) -> Value {
    let mut op = Map::new();
    op.insert("method".into(), json!(outcome.method_text));
    if let Some(b) = &outcome.bulk_id {
        op.insert("bulkId".into(), json!(b));
    }
    if let Some(l) = &outcome.location {
        op.insert("location".into(), json!(l));
    }
    if let Some(v) = &outcome.version {
        op.insert("version".into(), json!(v));
    }
    match &outcome.result {
        Ok(status) => {
            op.insert("status".into(), json!(status.to_string()));
        }
        Err(e) => {
            op.insert("status".into(), json!(e.status().to_string()));
            op.insert("response".into(), error_body(e));
        }
    }
    Value::Object(op)
}
