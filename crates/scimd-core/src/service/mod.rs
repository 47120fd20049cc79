//! The resource service: every SCIM operation on resources, expressed over the
//! [`Store`] trait. HTTP handlers parse requests into typed values and call one
//! method here.
//!
//! By concern:
//! - `crud.rs`: create (POST, `POST /Me`), GET, replace (PUT), delete, and
//!   the write steps PATCH shares (hashing, preparing, compare-and-swap);
//! - `patch.rs`: PATCH and its three strategies (membership changes,
//!   read-modify-write in the store, read then compare-and-swap);
//! - `list.rs`: list and search, index and cursor paging, the cursor key;
//! - `root_search.rs`: a filter or `sortBy` over several resource types;
//! - `owner.rs`: owner rules and the dependents a delete removes.
//!
//! The shared types, the service itself and its accessors are here.

mod crud;
mod list;
mod owner;
mod patch;
mod root_search;

pub use patch::PatchPlan;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{ScimError, ScimResult};
use crate::projection::Projection;
use crate::rendering::{RenderCache, Rendered};
use crate::schema::{Registry, ResourceTypeDef};
use crate::store::{Store, StoreError};
use crate::value::now_timestamp as now;

/// How many times a write without `If-Match` is retried when a concurrent
/// write moved the version underneath it.
const MAX_WRITE_ATTEMPTS: usize = 16;

/// A resource's document after `projection`, as the JSON a response carries.
pub fn serialised(resource: Resource, projection: &Projection) -> Rendered {
    let tag = resource.tag();
    let doc = projection.apply(&resource.resource_type, resource.doc);
    let body = serde_json::to_vec(&Value::Object(doc)).unwrap_or_default();
    Rendered {
        tag,
        body: body.into(),
    }
}

/// Settings the service needs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Public base URL of the SCIM API, without trailing slash
    /// (e.g. `http://127.0.0.1:8080/scim/v2`); used in `meta.location`.
    pub base_url: String,
    /// Page size when the client gives no `count`.
    pub default_count: u64,
    /// Largest page served; larger `count` values are lowered to it.
    pub max_count: u64,
    /// Lifetime of a paging cursor, in seconds.
    pub cursor_timeout: u64,
    /// Most operations in one Bulk request.
    pub bulk_max_operations: usize,
    /// Largest Bulk request body, in bytes.
    pub bulk_max_payload: usize,
    /// Whole-document renderings kept for reuse ([`RenderCache`]); 0: none.
    pub render_cache: usize,
}

/// A version precondition from `If-Match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No `If-Match`, or `*`.
    None,
    /// `If-Match: W/"n"`.
    Version(i64),
    /// An `If-Match` that cannot match any version of ours.
    Unmatchable,
}

/// A resource rendered as a full SCIM document (before projection).
#[derive(Debug, Clone)]
pub struct Resource {
    pub resource_type: Arc<ResourceTypeDef>,
    pub version: i64,
    pub doc: Map<String, Value>,
}

impl Resource {
    /// Its entity tag: the rendered `meta.version` (which carries the
    /// computed groups' digest when they show), as ETag and Bulk's
    /// `version` must equal it.
    pub fn tag(&self) -> String {
        self.doc
            .get("meta")
            .and_then(|m| m.get("version"))
            .and_then(Value::as_str)
            .map_or_else(|| crate::resource::etag(self.version), str::to_string)
    }
}

/// A page of rendered resources.
#[derive(Debug, Clone)]
pub struct ResourcePage {
    pub total: u64,
    /// `None` when the page was asked for by cursor.
    pub start_index: Option<u64>,
    /// The cursor of the next page, when there is one (cursor paging).
    pub next_cursor: Option<String>,
    pub resources: Vec<Resource>,
}

/// The SearchRequest message URN (`POST .search`).
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// A list or search request, parsed at the edge.
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub filter: Option<scimd_filter::Filter>,
    pub sort_by: Option<String>,
    pub descending: bool,
    pub start_index: Option<u64>,
    pub count: Option<u64>,
    /// Cursor paging (RFC 9865): `Some("")` asks for the first page,
    /// `Some(cursor)` continues; `None` is index paging.
    pub cursor: Option<String>,
}

/// Every SCIM resource operation.
pub struct ResourceService {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    config: ServiceConfig,
    cursor_key: tokio::sync::OnceCell<Vec<u8>>,
    renderings: RenderCache,
    /// What a group member may be ([`Registry::member_types`]), fixed with the registry.
    member_types: Vec<String>,
}

impl ResourceService {
    /// A service over `store`.
    pub fn new(store: Arc<dyn Store>, registry: Arc<Registry>, config: ServiceConfig) -> Self {
        ResourceService {
            member_types: registry.member_types(),
            renderings: RenderCache::new(config.render_cache),
            store,
            registry,
            config,
            cursor_key: tokio::sync::OnceCell::new(),
        }
    }

    /// The schema registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The settings.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

fn check_precondition(precondition: Precondition, current: i64) -> ScimResult<()> {
    match precondition {
        Precondition::None => Ok(()),
        Precondition::Version(v) if v == current => Ok(()),
        _ => Err(ScimError::PreconditionFailed(format!(
            "If-Match does not match the current version W/\"{current}\""
        ))),
    }
}

fn not_found(rt: &ResourceTypeDef, id: &str) -> ScimError {
    // The id is the client's, from the URL: quoted in part, not echoed whole.
    let shown: String = id.chars().take(64).collect();
    let more = if shown.len() < id.len() { "…" } else { "" };
    ScimError::NotFound(format!("{} {shown}{more} not found", rt.name()))
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Uniqueness { attr } => {
                ScimError::Uniqueness(format!("another resource already has this {attr}"))
            }
            StoreError::NotFound => ScimError::NotFound("resource not found".into()),
            StoreError::VersionMismatch { current } => ScimError::PreconditionFailed(format!(
                "If-Match does not match the current version W/\"{current}\""
            )),
            StoreError::UnknownMember(id) => {
                ScimError::InvalidValue(format!("member '{id}' does not exist"))
            }
            StoreError::UnknownOwner(id) => {
                ScimError::InvalidValue(format!("the owner '{id}' does not exist"))
            }
            StoreError::Conflict => ScimError::Unavailable("write conflict; retry".into()),
            // The cause was logged by the store; clients learn to retry.
            StoreError::Unavailable(_) => {
                ScimError::Unavailable("the store cannot be reached for now; retry".into())
            }
            // The cause is logged where the answer is written.
            StoreError::Full(detail) => ScimError::InsufficientStorage(format!(
                "the store's disk is full: nothing was written; retry once space is freed ({detail})"
            )),
            StoreError::Backend(detail) => ScimError::Internal(detail),
        }
    }
}
