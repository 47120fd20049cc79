//! Storage implementations of [`scimd_core::store::Store`]. The only crate
//! that contains SQL.
//!
//! Architecture invariants:
//! - Filters, sorting and paging run in SQL over the `attr_values` index
//!   ([`translate`]); no code path loads all resources.
//! - A write is acknowledged only after its transaction committed with
//!   `synchronous=FULL` (group commit batches concurrent writes into one fsync).

mod sqlite;
mod translate;

pub use sqlite::SqliteStore;
