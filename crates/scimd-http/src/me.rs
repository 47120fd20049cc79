//! `/Me` (RFC 7644 section 3.11): the User whose id is the token's subject.
//! Tokens of the client_credentials grant name a client, not a user, so
//! `/Me` answers 501 with the reason unless the subject is a User here (a
//! client registered under a user's id, or an external issuer's user token).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use scimd_auth::Grant;
use scimd_core::ScimError;
use scimd_core::schema::ResourceTypeDef;

use crate::extract::{IfNoneMatch, QueryParams, ScimJson};
use crate::resources::{
    delete_resource, patch_resource, projection, read_resource, replace_resource, single,
};
use crate::{ApiError, AppState};

type Subject = Extension<Option<Arc<Grant>>>;

/// The User resource type.
fn users(state: &AppState) -> Result<Arc<ResourceTypeDef>, ApiError> {
    state
        .service
        .registry()
        .by_name("User")
        .cloned()
        .ok_or_else(|| {
            ApiError(ScimError::NotImplemented(
                "/Me needs the User resource type".into(),
            ))
        })
}

/// The request's grant; none (protection mode BYPASS) has no subject.
fn grant_of(grant: &Option<Arc<Grant>>) -> Result<&Grant, ApiError> {
    grant.as_deref().ok_or_else(|| {
        ApiError(ScimError::NotImplemented(
            "/Me needs a bearer token whose subject is a User; this request carries none \
             (protection mode BYPASS)"
                .into(),
        ))
    })
}

/// The User resource type and the id of the token's user.
async fn me(
    state: &AppState,
    grant: &Option<Arc<Grant>>,
) -> Result<(Arc<ResourceTypeDef>, String), ApiError> {
    let users = users(state)?;
    let subject = &grant_of(grant)?.subject;
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

/// `POST /Me` (RFC 7644 section 3.11): creates the User whose id is the
/// token's subject, so that the same token's `/Me` then reads it. A subject
/// that is the token's own client (the client_credentials grant names a
/// client, not a person) or that cannot be a resource id cannot become a
/// User: 501. A subject that is a User already: 409 `uniqueness`.
pub async fn create(
    State(state): State<AppState>,
    Extension(grant): Subject,
    QueryParams(params): QueryParams,
    ScimJson(body): ScimJson,
) -> Result<Response, ApiError> {
    let users = users(&state)?;
    let grant = grant_of(&grant)?;
    let subject = grant.subject.as_str();
    if subject == grant.client_id {
        return Err(ApiError(ScimError::NotImplemented(format!(
            "POST /Me creates the User that the token's subject names, and this token's \
             subject is its client '{subject}' (the client_credentials grant), not a person; \
             use POST /Users"
        ))));
    }
    if !usable_id(subject) {
        return Err(ApiError(ScimError::NotImplemented(
            "POST /Me: the token's subject cannot be a resource id (empty, too long, `.`, `..` or \
             `.search`, or with '/', '?', '#', '%', spaces, control or non-ASCII characters)"
                .into(),
        )));
    }
    let p = projection(&users, &params)?;
    let created = state.service.create_as(&users, subject, body).await?;
    Ok(single(StatusCode::CREATED, created, &p))
}

/// An id that a resource can have and a URL path segment can carry as it
/// is: printable ASCII without `/ ? # %`, and not a segment that clients
/// normalise away (`.`, `..`) or that a route takes (`.search`).
fn usable_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && !matches!(id, "." | ".." | ".search")
        && id
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '?' | '#' | '%'))
}

pub async fn get(
    State(state): State<AppState>,
    Extension(grant): Subject,
    QueryParams(params): QueryParams,
    IfNoneMatch(tags): IfNoneMatch,
) -> Result<Response, ApiError> {
    let (rt, id) = me(&state, &grant).await?;
    read_resource(&state, &rt, &id, &params, tags.as_ref()).await
}

pub async fn replace(
    State(state): State<AppState>,
    Extension(grant): Subject,
    QueryParams(params): QueryParams,
    headers: HeaderMap,
    ScimJson(body): ScimJson,
) -> Result<Response, ApiError> {
    let (rt, id) = me(&state, &grant).await?;
    replace_resource(&state, &rt, &id, &params, &headers, body).await
}

pub async fn patch(
    State(state): State<AppState>,
    Extension(grant): Subject,
    QueryParams(params): QueryParams,
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
