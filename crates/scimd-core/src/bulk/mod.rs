//! Bulk (RFC 7644 section 3.7): a BulkRequest parsed into typed operations,
//! `bulkId` references resolved, and the operations run through the
//! [`ResourceService`](crate::service::ResourceService) in an order that
//! respects those references.
//!
//! Independent operations run concurrently (bounded), because the stores
//! commit concurrent writes together: that is what makes a bulk load faster
//! than the same requests one by one. Operations that depend on each other
//! are ordered: an operation runs once every `bulkId` it names is created,
//! and operations on the same path run in request order. With
//! `failOnErrors` the operations run one at a time, so that none runs after
//! the error that stops the request.
//!
//! By concern:
//! - `request.rs`: the BulkRequest parsed into typed operations;
//! - `refs.rs`: `bulkId` references found, substituted, taken out of a
//!   POST to break a cycle, and what each refers to;
//! - `execute.rs`: one operation's work through the `ResourceService`;
//! - `scheduler.rs`: which operation runs when ([`run`]).

mod execute;
mod refs;
mod request;
mod scheduler;

use std::sync::Arc;

use serde_json::Value;

use crate::error::{ScimError, ScimResult};
use crate::schema::ResourceTypeDef;

pub use request::parse_request;
pub use scheduler::run;

/// The BulkRequest message URN.
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// The BulkResponse message URN.
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

/// The method of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkMethod {
    Post,
    Put,
    Patch,
    Delete,
}

impl BulkMethod {
    fn parse(text: &str) -> Option<BulkMethod> {
        match text.to_ascii_uppercase().as_str() {
            "POST" => Some(BulkMethod::Post),
            "PUT" => Some(BulkMethod::Put),
            "PATCH" => Some(BulkMethod::Patch),
            "DELETE" => Some(BulkMethod::Delete),
            _ => None,
        }
    }
}

/// One operation of a BulkRequest, as far as it could be understood. An
/// operation that cannot run keeps its error and is answered with it in
/// its turn, like any failing operation.
#[derive(Debug, Clone)]
pub struct BulkOperation {
    /// The method as sent (echoed in the response).
    pub method_text: String,
    pub bulk_id: Option<String>,
    pub version: Option<String>,
    pub path: String,
    pub data: Option<Value>,
    target: ScimResult<Target>,
}

#[derive(Debug, Clone)]
struct Target {
    method: BulkMethod,
    resource_type: Arc<ResourceTypeDef>,
    /// The resource id (or a `bulkId:` reference) for PUT, PATCH, DELETE.
    id: Option<String>,
}

/// A parsed BulkRequest.
#[derive(Debug, Clone)]
pub struct BulkRequest {
    pub fail_on_errors: Option<usize>,
    pub operations: Vec<BulkOperation>,
}

/// The result of one operation, in request order.
#[derive(Debug, Clone)]
pub struct BulkOutcome {
    pub method_text: String,
    pub bulk_id: Option<String>,
    pub location: Option<String>,
    /// The written resource's `meta.version` (its entity tag).
    pub version: Option<String>,
    /// The HTTP status of the operation, or its error.
    pub result: Result<u16, ScimError>,
}
