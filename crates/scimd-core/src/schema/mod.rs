//! Schemas are data: RFC 7643 schema and resource type documents, loaded into a
//! [`Registry`] that drives validation, output, filtering and discovery.

mod model;
mod registry;

pub use model::*;
pub use registry::*;

/// The core User schema URN.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema URN.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension URN.
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
