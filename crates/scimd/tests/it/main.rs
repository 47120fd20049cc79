#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The integration test binary: a real scimd on 127.0.0.1:0 over a temporary
//! SQLite store, spoken to over HTTP. `tests/it_pg` runs the same modules on
//! PostgreSQL.

include!("../it/modules.rs");
// The listener's limits do not depend on the store: SQLite only.
mod limits;
// A full disk under the embedded store: SQLite only.
mod disk_full;
// A crash that loses what SQLite had not synced: the embedded store only.
mod power_loss;
// The embedded store's WAL copied once writes pause: SQLite only.
mod idle_checkpoint;
// A push receiver down for a minute: the delivery path is the stores' alike.
mod events_outage;

/// This binary's store: SQLite in each test's temporary directory.
mod backend {
    pub async fn database_url(_data_dir: &std::path::Path) -> Option<String> {
        None
    }
}
