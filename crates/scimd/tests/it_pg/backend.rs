//! The store of the PostgreSQL test binaries: each test directory gets a
//! database of its own on the shared test server (`scimd_store::testing`).

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
