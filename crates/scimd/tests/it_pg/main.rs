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
mod backend {
    use std::path::Path;

    use scimd_store::testing;

    pub async fn database_url(data_dir: &Path) -> Option<String> {
        let server = match testing::shared(Path::new(env!("CARGO_TARGET_TMPDIR"))) {
            Ok(server) => server,
            Err(why) => {
                if let Err(required) = testing::unavailable(&why) {
                    panic!("{required}");
                }
                // Every test here needs PostgreSQL: end the whole binary as
                // a success, with the notice just printed.
                std::process::exit(0);
            }
        };
        let name = testing::database_name(&data_dir.display().to_string());
        Some(server.database(&name).await.unwrap())
    }
}
