#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The integration suite again, on PostgreSQL: the modules of `tests/it`
//! (`tests/it/modules.rs`), with a backend that gives each test's temporary
//! directory a PostgreSQL database of its own (on `SCIMD_TEST_DATABASE_URL`
//! or a throwaway server started for this process, see
//! `scimd_store::testing`). Plus what only a shared database can show:
//! several scimd on one database (`replicas`), and export/import between
//! stores (`transfer`).

include!("../it/modules.rs");
mod outage;
mod relay;
mod replicas;
mod transfer;

/// This binary's store: PostgreSQL.
#[path = "backend.rs"]
mod backend;
