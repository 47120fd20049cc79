//! Resource endpoints, generic over every resource type in the registry.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scimd_core::ScimError;
use scimd_core::projection::Projection;
use scimd_core::rendering::Rendered;
use scimd_core::resource::etag;
use scimd_core::schema::ResourceTypeDef;
use scimd_core::service::{
    ListRequest, PatchPlan, Precondition, Resource, ResourcePage, SEARCH_REQUEST, serialised,
};
use scimd_core::value::check_message_schema;
use serde_json::{Value, json};

use crate::extract::{IfNoneMatch, QueryParams, ScimJson, Tags, status_only};
use crate::{ApiError, AppState, SCIM_JSON};

type Params = QueryParams;

fn resource_type(state: &AppState, endpoint: &str) -> Result<Arc<ResourceTypeDef>, ApiError> {
    state
        .service
        .registry()
        .by_endpoint(endpoint)
        .cloned()
        .ok_or_else(|| ApiError(ScimError::NotFound(format!("no endpoint /{endpoint}"))))
}

/// Parameter `name` of a request's [`QueryParams`].
fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(&name.to_ascii_lowercase()).map(String::as_str)
}

/// A SCIM JSON response.
pub fn scim_json(status: StatusCode, body: &Value) -> Response {
    scim_body(status, body.to_string().into())
}

/// A SCIM JSON response from serialised JSON.
fn scim_body(status: StatusCode, body: Bytes) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    r
}

/// A document with its entity tag as `ETag`.
fn tagged(status: StatusCode, rendered: Rendered) -> Response {
    let mut r = scim_body(status, rendered.body);
    if let Ok(v) = HeaderValue::from_str(&rendered.tag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

pub fn single(status: StatusCode, resource: Resource, projection: &Projection) -> Response {
    let location = resource
        .doc
        .get("meta")
        .and_then(|m| m.get("location"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut r = tagged(status, serialised(resource, projection));
    if status == StatusCode::CREATED
        && let Some(v) = location.and_then(|l| HeaderValue::from_str(&l).ok())
    {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

pub fn projection(
    rt: &ResourceTypeDef,
    params: &HashMap<String, String>,
) -> Result<Projection, ApiError> {
    Ok(Projection::parse(
        rt,
        param(params, "attributes"),
        param(params, "excludedAttributes"),
    )?)
}

pub async fn create(
    State(state): State<AppState>,
    Path(endpoint): Path<String>,
    QueryParams(params): Params,
    ScimJson(body): ScimJson,
) -> Result<Response, ApiError> {
    let rt = resource_type(&state, &endpoint)?;
    let p = projection(&rt, &params)?;
    let created = state.service.create(&rt, body).await?;
    Ok(single(StatusCode::CREATED, created, &p))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path((endpoint, id)): Path<(String, String)>,
    QueryParams(params): Params,
    IfNoneMatch(tags): IfNoneMatch,
) -> Result<Response, ApiError> {
    let rt = resource_type(&state, &endpoint)?;
    read_resource(&state, &rt, &id, &params, tags.as_ref()).await
}

/// GET of one resource (`/{endpoint}/{id}` and `/Me`), with `If-None-Match`.
pub(crate) async fn read_resource(
    state: &AppState,
    rt: &Arc<ResourceTypeDef>,
    id: &str,
    params: &HashMap<String, String>,
    if_none_match: Option<&Tags>,
) -> Result<Response, ApiError> {
    let p = projection(rt, params)?;
    let rendered = if p == Projection::all() {
        state.service.get_rendered(rt, id).await?
    } else {
        serialised(state.service.get(rt, id, &p).await?, &p)
    };
    if if_none_match.is_some_and(|tags| tags.names_tag(&rendered.tag)) {
        let mut r = status_only(StatusCode::NOT_MODIFIED);
        if let Ok(v) = HeaderValue::from_str(&rendered.tag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return Ok(r);
    }
    Ok(tagged(StatusCode::OK, rendered))
}

pub async fn replace(
    State(state): State<AppState>,
    Path((endpoint, id)): Path<(String, String)>,
    QueryParams(params): Params,
    headers: HeaderMap,
    ScimJson(body): ScimJson,
) -> Result<Response, ApiError> {
    let rt = resource_type(&state, &endpoint)?;
    replace_resource(&state, &rt, &id, &params, &headers, body).await
}

/// The precondition of a write: `If-Match`, and `If-None-Match` (RFC 9110
/// section 13.1.2), under which the write goes ahead only if the current
/// version is not one it names (`*`: only if there is no current one, which
/// a write to an existing resource never satisfies). The version checked
/// becomes the write's compare-and-swap, so nothing slips in between.
async fn write_precondition(
    state: &AppState,
    rt: &Arc<ResourceTypeDef>,
    id: &str,
    headers: &HeaderMap,
) -> Result<Precondition, ApiError> {
    let wanted = Tags::of(headers, &header::IF_MATCH);
    let unwanted = Tags::of(headers, &header::IF_NONE_MATCH);
    // One version or none to check: the store's compare-and-swap does it.
    match (&wanted, &unwanted) {
        (None | Some(Tags::Any), None) => return Ok(Precondition::None),
        (Some(tags @ Tags::Named(_)), None) => {
            // `W/"3"` and `W/"3-…"` name one version.
            let mut named = tags.versions().unwrap_or_default();
            named.sort_unstable();
            named.dedup();
            if named.len() <= 1 {
                return Ok(named
                    .first()
                    .map_or(Precondition::Unmatchable, |v| Precondition::Version(*v)));
            }
        }
        _ => {}
    }
    let id_only = Projection::parse(rt, Some("id"), None)?;
    let current = state.service.get(rt, id, &id_only).await?.version;
    let failed = |why: &str| {
        ApiError(ScimError::PreconditionFailed(format!(
            "{why} (the current version is W/\"{current}\")"
        )))
    };
    if unwanted.is_some_and(|tags| tags.names_version(current)) {
        return Err(failed("If-None-Match names the current version"));
    }
    if wanted.is_some_and(|tags| !tags.names_version(current)) {
        return Err(failed("If-Match does not match"));
    }
    Ok(Precondition::Version(current))
}

/// PUT of one resource (`/{endpoint}/{id}` and `/Me`).
pub(crate) async fn replace_resource(
    state: &AppState,
    rt: &Arc<ResourceTypeDef>,
    id: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Value,
) -> Result<Response, ApiError> {
    let p = projection(rt, params)?;
    let replaced = state
        .service
        .replace(
            rt,
            id,
            body,
            write_precondition(state, rt, id, headers).await?,
        )
        .await?;
    Ok(single(StatusCode::OK, replaced, &p))
}

pub async fn delete(
    State(state): State<AppState>,
    Path((endpoint, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let rt = resource_type(&state, &endpoint)?;
    delete_resource(&state, &rt, &id, &headers).await
}

/// DELETE of one resource (`/{endpoint}/{id}` and `/Me`).
pub(crate) async fn delete_resource(
    state: &AppState,
    rt: &Arc<ResourceTypeDef>,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let precondition = write_precondition(state, rt, id, headers).await?;
    state.service.delete(rt, id, precondition).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

pub async fn patch(
    State(state): State<AppState>,
    Path((endpoint, id)): Path<(String, String)>,
    QueryParams(params): Params,
    headers: HeaderMap,
    ScimJson(body): ScimJson,
) -> Result<Response, ApiError> {
    let rt = resource_type(&state, &endpoint)?;
    patch_resource(&state, &rt, &id, &params, &headers, &body).await
}

/// PATCH of one resource (`/{endpoint}/{id}` and `/Me`).
pub(crate) async fn patch_resource(
    state: &AppState,
    rt: &Arc<ResourceTypeDef>,
    id: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Value,
) -> Result<Response, ApiError> {
    let p = projection(rt, params)?;
    let ops = scimd_core::patch::parse_request(body)?;
    let asked_minimal = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("return=minimal"));
    // A membership change answers 204 (RFC 7644 section 3.5.2 allows it)
    // unless the client names what it wants back: the whole group would be
    // megabytes for a large one, on every change Entra or Okta sends.
    let names_attributes =
        param(params, "attributes").is_some() || param(params, "excludedAttributes").is_some();
    let plan = state.service.plan_patch(rt, &ops)?;
    let minimal = asked_minimal || (!names_attributes && matches!(plan, PatchPlan::Members(_)));
    let precondition = write_precondition(state, rt, id, headers).await?;
    if minimal {
        // Shows nothing: nothing is read back.
        let version = state
            .service
            .patch_for_version(rt, id, &ops, plan, precondition)
            .await?;
        let mut r = status_only(StatusCode::NO_CONTENT);
        if let Ok(v) = HeaderValue::from_str(&etag(version)) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return Ok(r);
    }
    let patched = state
        .service
        .patch_as_planned(rt, id, &ops, plan, precondition, &p)
        .await?;
    Ok(single(StatusCode::OK, patched, &p))
}

pub async fn no_route() -> ApiError {
    ApiError(ScimError::NotFound("no such SCIM endpoint".into()))
}

/// A SCIM 405 instead of axum's empty one (the `Allow` header stays).
pub async fn method_not_allowed() -> ApiError {
    ApiError(ScimError::MethodNotAllowed(
        "this endpoint does not take that method".into(),
    ))
}

fn number(params: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    match param(params, name) {
        None => Ok(None),
        Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
            ApiError(ScimError::InvalidValue(format!(
                "{name} must be an integer"
            )))
        }),
    }
}

fn parse_filter(text: Option<&str>) -> Result<Option<scimd_filter::Filter>, ApiError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => scimd_filter::parse_filter(t)
            .map(Some)
            .map_err(|e| ApiError(ScimError::InvalidFilter(format!("invalid filter: {e}")))),
    }
}

fn descending(order: Option<&str>) -> Result<bool, ApiError> {
    match order.map(str::to_ascii_lowercase).as_deref() {
        None | Some("ascending") => Ok(false),
        Some("descending") => Ok(true),
        Some(other) => Err(ApiError(ScimError::InvalidValue(format!(
            "sortOrder must be ascending or descending, not '{other}'"
        )))),
    }
}

fn list_request(
    filter: Option<&str>,
    sort_by: Option<&str>,
    sort_order: Option<&str>,
    start_index: Option<i64>,
    count: Option<i64>,
    cursor: Option<String>,
) -> Result<ListRequest, ApiError> {
    Ok(ListRequest {
        filter: parse_filter(filter)?,
        sort_by: sort_by
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        descending: descending(sort_order)?,
        // RFC 7644 3.4.2.4: startIndex < 1 is 1; a negative count is 0.
        start_index: start_index.map(|s| u64::try_from(s.max(1)).unwrap_or(1)),
        count: count.map(|c| u64::try_from(c.max(0)).unwrap_or(0)),
        cursor,
    })
}

fn list_response(page: ResourcePage) -> Response {
    let resources: Vec<Value> = page
        .resources
        .into_iter()
        .map(|r| Value::Object(r.doc))
        .collect();
    let mut body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": page.total,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    });
    if let Some(obj) = body.as_object_mut() {
        if let Some(start) = page.start_index {
            obj.insert("startIndex".into(), json!(start));
        }
        if let Some(next) = page.next_cursor {
            obj.insert("nextCursor".into(), json!(next));
        }
    }
    scim_json(StatusCode::OK, &body)
}

async fn run_list(
    state: &AppState,
    types: Vec<Arc<ResourceTypeDef>>,
    request: ListRequest,
    attributes: Option<String>,
    excluded: Option<String>,
) -> Result<Response, ApiError> {
    let (mut page, projections) = state
        .service
        .list(&types, &request, |rt| {
            Projection::parse(rt, attributes.as_deref(), excluded.as_deref())
        })
        .await?;
    for r in &mut page.resources {
        if let Some((_, p)) = types
            .iter()
            .zip(&projections)
            .find(|(t, _)| t.name() == r.resource_type.name())
        {
            let doc = std::mem::take(&mut r.doc);
            r.doc = p.apply(&r.resource_type, doc);
        }
    }
    Ok(list_response(page))
}

pub async fn list(
    State(state): State<AppState>,
    Path(endpoint): Path<String>,
    QueryParams(params): Params,
) -> Result<Response, ApiError> {
    let rt = resource_type(&state, &endpoint)?;
    list_types(&state, vec![rt], &params).await
}

/// `GET` at the base URI: a query over every resource type (RFC 7644
/// section 3.4.2), as `POST /.search` with the same scope.
pub async fn list_root(
    State(state): State<AppState>,
    QueryParams(params): Params,
) -> Result<Response, ApiError> {
    let types = state.service.registry().resource_types().to_vec();
    list_types(&state, types, &params).await
}

async fn list_types(
    state: &AppState,
    types: Vec<Arc<ResourceTypeDef>>,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let request = list_request(
        param(params, "filter"),
        param(params, "sortBy"),
        param(params, "sortOrder"),
        number(params, "startIndex")?,
        number(params, "count")?,
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("cursor"))
            .map(|(_, v)| v.clone()),
    )?;
    let attributes = param(params, "attributes").map(str::to_string);
    let excluded = param(params, "excludedAttributes").map(str::to_string);
    run_list(state, types, request, attributes, excluded).await
}

/// A SearchRequest body (RFC 7644 section 3.4.3).
fn search_request(body: &Value) -> Result<(ListRequest, Option<String>, Option<String>), ApiError> {
    let Value::Object(map) = body else {
        return Err(ApiError(ScimError::InvalidSyntax(
            "a SearchRequest must be a JSON object".into(),
        )));
    };
    check_message_schema(map, SEARCH_REQUEST)?;
    let get = |name: &str| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        match get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Array(items)) if name.to_ascii_lowercase().contains("attributes") => {
                // Attribute paths, each a string (found by schemathesis:
                // `[null, null]` was read as no attribute at all).
                let paths: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                paths.map(|p| Some(p.join(","))).ok_or_else(|| {
                    ApiError(ScimError::InvalidValue(format!(
                        "'{name}' must hold attribute paths as strings"
                    )))
                })
            }
            Some(_) => Err(ApiError(ScimError::InvalidValue(format!(
                "'{name}' has the wrong type"
            )))),
        }
    };
    let int = |name: &str| -> Result<Option<i64>, ApiError> {
        match get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                ApiError(ScimError::InvalidValue(format!(
                    "'{name}' must be an integer"
                )))
            }),
        }
    };
    let request = list_request(
        text("filter")?.as_deref(),
        text("sortBy")?.as_deref(),
        text("sortOrder")?.as_deref(),
        int("startIndex")?,
        int("count")?,
        text("cursor")?,
    )?;
    Ok((request, text("attributes")?, text("excludedAttributes")?))
}

pub async fn search(
    State(state): State<AppState>,
    Path(endpoint): Path<String>,
    ScimJson(body): ScimJson,
) -> Result<Response, ApiError> {
    let rt = resource_type(&state, &endpoint)?;
    let (request, attributes, excluded) = search_request(&body)?;
    run_list(&state, vec![rt], request, attributes, excluded).await
}

pub async fn search_root(
    State(state): State<AppState>,
    ScimJson(body): ScimJson,
) -> Result<Response, ApiError> {
    let types = state.service.registry().resource_types().to_vec();
    let (request, attributes, excluded) = search_request(&body)?;
    run_list(&state, types, request, attributes, excluded).await
}
