//! Storage implementations of [`scimd_core::store::Store`]: SQLite (the
//! embedded default) and PostgreSQL (shared by replicas). The only crate
//! that contains SQL.
//!
//! Architecture invariants:
//! - Filters, sorting and paging run in SQL over the `attr_values` index
//!   ([`translate`]); no code path loads all resources.
//! - A write is acknowledged only after its transaction committed: with
//!   `synchronous=FULL` on SQLite (group commit batches concurrent writes
//!   into one fsync), with the server's commit on PostgreSQL.

mod audit;
mod nesting;
mod pg;
mod rules;
mod sqlite;
mod streams;
mod translate;

#[cfg(feature = "testing")]
pub mod testing;

pub use pg::{DEFAULT_RECENT_WRITES, PgStore};
pub use sqlite::SqliteStore;
