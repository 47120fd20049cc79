//! The SCIM core of scimd: everything SCIM means, nothing about how bytes move.
//!
//! Architecture invariants:
//! - No HTTP, no SQL, no sockets or files: this crate never imports axum, a
//!   database driver, or configuration/CLI crates. It is driven through
//!   [`service::ResourceService`] and reaches storage only through the
//!   [`store::Store`] trait.
//! - Behaviour comes from schema documents ([`schema::Registry`]): adding a
//!   resource type or an extension is data, not code.
//! - Every failure is a [`error::ScimError`], whose status and scimType come
//!   from one table.

pub mod bulk;
pub mod changelog;
pub mod cursor;
pub mod error;
pub mod events;
pub mod index;
pub mod patch;
pub mod projection;
pub mod query;
pub mod rendering;
pub mod resource;
pub mod schema;
pub mod secret;
pub mod service;
pub mod store;
pub mod value;

pub use error::{ScimError, ScimResult};
