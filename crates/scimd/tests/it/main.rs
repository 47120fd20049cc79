#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The integration test binary: a real scimd on 127.0.0.1:0 over a temporary
//! SQLite store, spoken to over HTTP.

mod conformance;
mod discovery;
mod durability;
mod errors;
mod groups;
mod harness;
mod oauth;
mod paging;
mod patch;
mod tls;
mod users;
