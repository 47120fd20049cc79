//! The integration test binary: a real scimd on 127.0.0.1:0 over a temporary
//! SQLite store, spoken to over HTTP.

mod harness;
mod users;
mod groups;
mod discovery;
mod errors;
