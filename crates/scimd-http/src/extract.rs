//! Request parsing at the edge: JSON bodies with SCIM errors, preconditions.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use scimd_core::ScimError;
use scimd_core::service::Precondition;
use serde_json::Value;

use crate::{ApiError, AppState};

/// A JSON request body: malformed JSON is 400 invalidSyntax, an oversized body 413.
pub struct ScimJson(pub Value);

impl FromRequest<AppState> for ScimJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        // Content-Type is not checked: clients send application/scim+json,
        // application/json and text/json (Okta); the body must be JSON either way.
        let body = body_within(req, state.max_body, "the request body").await?;
        parse_json(&body).map(ScimJson)
    }
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError(ScimError::InvalidSyntax(format!(
            "the body is not valid JSON: {e}"
        )))
    })?;
    if has_nul(&value) {
        return Err(ApiError(ScimError::InvalidValue(
            "U+0000 (NUL) is not allowed in SCIM strings".into(),
        )));
    }
    Ok(value)
}

/// Whether a string (or a key) holds U+0000. Refused on every store:
/// PostgreSQL cannot keep it in text at all, and no identity attribute
/// carries it, so both stores answer the same 400.
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// A path naming U+0000 (`%00`) or bytes that are not UTF-8 (`%FF`) cannot
/// name any endpoint or resource: a SCIM 404 here, rather than the path
/// extractor's plain-text 400.
pub async fn refuse_unnameable_path(
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // One decode (borrowed when the path has no escapes), no allocation on
    // the common path.
    let why = match percent_encoding::percent_decode_str(req.uri().path()).decode_utf8() {
        Err(_) => Some("bytes that are not UTF-8"),
        Ok(path) if path.contains('\0') => Some("U+0000"),
        Ok(_) => None,
    };
    if let Some(why) = why {
        return axum::response::IntoResponse::into_response(ApiError(ScimError::NotFound(
            format!("no such resource (the path holds {why})"),
        )));
    }
    next.run(req).await
}

/// The body of `req`, at most `limit` bytes: a declared `Content-Length`
/// above it is refused before anything is read (a client that declares
/// 400 MB and sends nothing would otherwise hold the connection).
pub async fn body_within(req: Request, limit: usize, what: &str) -> Result<Bytes, ApiError> {
    let (parts, body) = req.into_parts();
    bytes_within(&parts.headers, body, limit)
        .await
        .map_err(|TooLarge| {
            ApiError(ScimError::PayloadTooLarge(format!(
                "{what} exceeds {limit} bytes"
            )))
        })
}

/// A body over its limit (declared or sent).
pub struct TooLarge;

/// What [`body_within`] reads, for endpoints that answer in another format.
pub async fn bytes_within(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, TooLarge> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(TooLarge);
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| TooLarge)
}

/// `If-Match` as a precondition on the stored version.
pub fn if_match(headers: &HeaderMap) -> Precondition {
    match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        None => Precondition::None,
        Some(v) if v.trim() == "*" => Precondition::None,
        Some(v) => v
            .split(',')
            .find_map(parse_etag)
            .map(Precondition::Version)
            .unwrap_or(Precondition::Unmatchable),
    }
}

/// The versions named by `If-None-Match`.
pub fn if_none_match(headers: &HeaderMap) -> Vec<i64> {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').filter_map(parse_etag).collect())
        .unwrap_or_default()
}

fn parse_etag(tag: &str) -> Option<i64> {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.trim_matches('"').parse().ok()
}

/// 204/304 helpers share this.
pub fn status_only(status: StatusCode) -> axum::response::Response {
    axum::response::IntoResponse::into_response(status)
}
