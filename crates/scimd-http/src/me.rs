//! `/Me` (RFC 7644 section 3.11): the User whose id is the token's subject.
//! Tokens of the client_credentials grant name a client, not a user, so
//! `/Me` answers 501 with the reason unless the subject is a User here (a
//! client registered under a user's id, or an external issuer's user token).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use scimd_auth::Grant;
use scimd_core::ScimError;
use scimd_core::schema::ResourceTypeDef;

use crate::extract::{ScimJson, if_match, status_only};
use crate::resources::{projection, single};
use crate::{ApiError, AppState};

type Subject = Extension<Option<Arc<Grant>>>;

/// The User resource type and the id of the token's user.
async fn me(
    state: &AppState,
    grant: &Option<Arc<Grant>>,
) -> Result<(Arc<ResourceTypeDef>, String), ApiError> {
    let users = state
        .service
        .registry()
        .by_name("User")
        .cloned()
        .ok_or_else(|| {
            ApiError(ScimError::NotImplemented(
                "/Me needs the User resource type".into(),
            ))
        })?;
    let Some(grant) = grant else {
        return Err(ApiError(ScimError::NotImplemented(
            "/Me needs a bearer token whose subject is a User; this request carries none \
             (protection mode BYPASS)"
                .into(),
        )));
    };
    let subject = &grant.subject;
    match state.service.load(&users, subject, false).await {
        Ok(_) => Ok((users, subject.clone())),
        Err(ScimError::NotFound(_)) => Err(ApiError(ScimError::NotImplemented(format!(
            "/Me acts on the User whose id is the token's subject, and the subject '{subject}' \
             is not a User of this server (a client_credentials token names its client); \
             use /Users/{{id}}"
        )))),
        Err(e) => Err(ApiError(e)),
    }
}

pub async fn get(
    State(state): State<AppState>,
    Extension(grant): Subject,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (rt, id) = me(&state, &grant).await?;
    let p = projection(&rt, &params)?;
    let resource = state.service.get(&rt, &id, &p).await?;
    Ok(single(StatusCode::OK, resource, &p))
}

pub async fn replace(
    State(state): State<AppState>,
    Extension(grant): Subject,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ScimJson(body): ScimJson,
) -> Result<Response, ApiError> {
    let (rt, id) = me(&state, &grant).await?;
    let p = projection(&rt, &params)?;
    let replaced = state
        .service
        .replace(&rt, &id, body, if_match(&headers))
        .await?;
    Ok(single(StatusCode::OK, replaced, &p))
}

pub async fn patch(
    State(state): State<AppState>,
    Extension(grant): Subject,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ScimJson(body): ScimJson,
) -> Result<Response, ApiError> {
    let (rt, id) = me(&state, &grant).await?;
    let p = projection(&rt, &params)?;
    let ops = scimd_core::patch::parse_request(&body)?;
    let patched = state
        .service
        .patch(&rt, &id, &ops, if_match(&headers), &p)
        .await?;
    Ok(single(StatusCode::OK, patched, &p))
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(grant): Subject,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (rt, id) = me(&state, &grant).await?;
    state.service.delete(&rt, &id, if_match(&headers)).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}
