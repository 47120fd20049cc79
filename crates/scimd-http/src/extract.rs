//! Request parsing at the edge: JSON bodies with SCIM errors, preconditions.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use scimd_core::ScimError;
use scimd_core::resource::{tag_opaque, tag_version};
use serde_json::Value;

use crate::{ApiError, AppState};

/// A request's query parameters by name in lower case (SCIM's parameter
/// names are case-insensitive). A name given twice, in any case, is a 400:
/// which of the two was meant cannot be told (`?filter=a&Filter=b`).
pub struct QueryParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError(ScimError::BadRequest(format!("the query string: {e}"))))?;
        let mut params = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            let key = name.to_ascii_lowercase();
            if params.insert(key, value).is_some() {
                return Err(ApiError(ScimError::InvalidValue(format!(
                    "the query parameter '{name}' is given more than once"
                ))));
            }
        }
        Ok(QueryParams(params))
    }
}

/// A read's `If-None-Match`, parsed where the headers are (a handler that
/// took the whole `HeaderMap` would copy it).
pub struct IfNoneMatch(pub Option<Tags>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfNoneMatch(Tags::of(
            &parts.headers,
            &header::IF_NONE_MATCH,
        )))
    }
}

/// A JSON request body: a page of another site 403 and a form or plain-text
/// type 415 ([`check_sender`]), a late body 408, a broken one 400, an
/// oversized one 413, malformed JSON 400 invalidSyntax, U+0000 400
/// invalidValue.
pub struct ScimJson(pub Value);

impl FromRequest<AppState> for ScimJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        check_sender(req.headers(), &state.public_base)?;
        let body = body_within(req, state.max_body, "the request body").await?;
        parse_json(&body).map(ScimJson)
    }
}

/// Refuses a body that a web page of another site sent (403: its browser
/// says so in `Sec-Fetch-Site` or `Origin`; identity providers' clients
/// send neither), or sent as a type a browser sends across sites without
/// asking first (415: a form, plain text; no SCIM client sends JSON so).
/// A page could otherwise write, through Bulk even delete, on a server that
/// needs no token (BYPASS). Any other type is read as JSON, or none at all:
/// clients send application/scim+json, application/json and text/json (Okta).
pub(crate) fn check_sender(headers: &HeaderMap, public_base: &str) -> Result<(), ApiError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let cross_site = text("sec-fetch-site").is_some_and(|site| {
        site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site")
    });
    let foreign = text("origin").is_some_and(|origin| !same_origin(origin, public_base));
    if cross_site || foreign {
        return Err(ApiError(ScimError::Forbidden(
            "a request that a web page of another site sent is refused".into(),
        )));
    }
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data" => {
            Err(ApiError(ScimError::UnsupportedMediaType(format!(
                "a SCIM body is JSON (application/scim+json), not {essence}"
            ))))
        }
        _ => Ok(()),
    }
}

/// Whether `origin` (`scheme://host[:port]`) is the origin of `base`.
fn same_origin(origin: &str, base: &str) -> bool {
    let Ok(base) = base.parse::<axum::http::Uri>() else {
        return false;
    };
    match (base.scheme_str(), base.authority()) {
        (Some(scheme), Some(authority)) => origin
            .trim_end_matches('/')
            .eq_ignore_ascii_case(&format!("{scheme}://{authority}")),
        _ => false,
    }
}

/// A JSON body: 400 invalidSyntax if it is not JSON, invalidValue if a
/// string holds U+0000.
pub(crate) fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
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
pub fn unnameable_path(path: &str) -> Option<ApiError> {
    // One decode (borrowed when the path has no escapes), no allocation on
    // the common path.
    let why = match percent_encoding::percent_decode_str(path).decode_utf8() {
        Err(_) => "bytes that are not UTF-8",
        Ok(path) if path.contains('\0') => "U+0000",
        Ok(_) => return None,
    };
    Some(ApiError(ScimError::NotFound(format!(
        "no such resource (the path holds {why})"
    ))))
}

/// The body of `req`, at most `limit` bytes: a declared `Content-Length`
/// above it is refused before anything is read (a client that declares
/// 400 MB and sends nothing would otherwise hold the connection).
pub async fn body_within(req: Request, limit: usize, what: &str) -> Result<Bytes, ApiError> {
    let (parts, body) = req.into_parts();
    bytes_within(&parts.headers, body, limit)
        .await
        .map_err(|e| ApiError(e.scim(what, limit)))
}

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over its limit, declared or sent (413).
    TooLarge,
    /// Not whole within the body deadline (408).
    Late,
    /// Cut off or malformed on the wire (400).
    Broken,
}

impl BodyError {
    /// The SCIM error for a body described as `what`, limited to `limit`.
    pub fn scim(self, what: &str, limit: usize) -> ScimError {
        match self {
            BodyError::TooLarge => {
                ScimError::PayloadTooLarge(format!("{what} exceeds {limit} bytes"))
            }
            BodyError::Late => ScimError::RequestTimeout(format!("{what} did not arrive in time")),
            BodyError::Broken => ScimError::BadRequest(format!("{what} could not be read")),
        }
    }

    fn of(e: axum::Error) -> BodyError {
        let inner = e.into_inner();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*inner);
        while let Some(c) = cause {
            if c.is::<http_body_util::LengthLimitError>() {
                return BodyError::TooLarge;
            }
            if c.is::<crate::deadline::BodyLate>() {
                return BodyError::Late;
            }
            cause = c.source();
        }
        BodyError::Broken
    }
}

/// What [`body_within`] reads, for endpoints that answer in another format.
pub async fn bytes_within(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(BodyError::TooLarge);
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(BodyError::of)
}

/// The entity tags of `If-Match` or `If-None-Match` (RFC 9110 section
/// 13.1): `*`, or the opaque tags named in every line of the header (tags
/// that are not ours in form match nothing and are left out).
pub enum Tags {
    Any,
    Named(Vec<String>),
}

impl Tags {
    pub fn of(headers: &HeaderMap, name: &HeaderName) -> Option<Tags> {
        let mut named = Vec::new();
        let mut present = false;
        for line in headers.get_all(name) {
            present = true;
            let Ok(line) = line.to_str() else { continue };
            if line.trim() == "*" {
                return Some(Tags::Any);
            }
            named.extend(tag_list(line).filter_map(tag_opaque).map(str::to_string));
        }
        present.then_some(Tags::Named(named))
    }

    /// The resource versions named; `None` for `*`.
    pub fn versions(&self) -> Option<Vec<i64>> {
        match self {
            Tags::Any => None,
            Tags::Named(named) => Some(named.iter().filter_map(|t| tag_version(t)).collect()),
        }
    }

    /// Whether these tags name resource version `version` (writes).
    pub fn names_version(&self, version: i64) -> bool {
        self.versions().is_none_or(|v| v.contains(&version))
    }

    /// Whether these tags name the representation tagged `tag` (reads).
    pub fn names_tag(&self, tag: &str) -> bool {
        match self {
            Tags::Any => true,
            Tags::Named(named) => tag_opaque(tag).is_some_and(|t| named.iter().any(|n| n == t)),
        }
    }
}

/// The members of an entity-tag list: commas inside a quoted tag do not
/// separate (`"x,3,y"` is one tag, not a `3` between two halves).
fn tag_list(line: &str) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    line.split(move |c: char| {
        if c == '"' {
            quoted = !quoted;
        }
        c == ',' && !quoted
    })
}

/// 204/304 helpers share this.
pub fn status_only(status: StatusCode) -> axum::response::Response {
    axum::response::IntoResponse::into_response(status)
}
