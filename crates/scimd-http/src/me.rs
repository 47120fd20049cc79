//! `/Me` (RFC 7644 section 3.11): the User whose id is the token's subject.
//! Tokens of the client_credentials grant name a client, not a user, so
//! `/Me` answers 501 with the reason unless the subject is a User here (a
//! client registered under a user's id, or an external issuer's user token).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use scimd_auth::Grant;
use scimd_core::ScimError;
use scimd_core::schema::ResourceTypeDef;

use crate::extract::ScimJson;
use crate::resources::{delete_resource, patch_resource, read_resource, replace_resource};
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
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (rt, id) = me(&state, &grant).await?;
    read_resource(&state, &rt, &id, &params, &headers).await
}

pub async fn replace(
    State(state): State<AppState>,
    Extension(grant): Subject,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ScimJson(body): ScimJson,
) -> Result<Response, ApiError> {
    let (rt, id) = me(&state, &grant).await?;
    replace_resource(&state, &rt, &id, &params, &headers, body).await
}

pub async fn patch(
    State(state): State<AppState>,
    Extension(grant): Subject,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ScimJson(body): ScimJson,
) -> Result<Response, ApiError> {
    let (rt, id) = me(&state, &grant).await?;
    patch_resource(&state, &rt, &id, &params, &headers, &body).await
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(grant): Subject,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (rt, id) = me(&state, &grant).await?;
    delete_resource(&state, &rt, &id, &headers).await
}
