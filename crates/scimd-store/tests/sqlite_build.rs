//! The bundled SQLite must be built with the options of `.cargo/config.toml`
//! (a build outside this tree, or a libsqlite3-sys upgrade that renames its
//! variable, would silently bring back the global mutexes). `fdatasync` is
//! not among the options SQLite reports; the other two are.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[test]
fn bundled_sqlite_has_the_configured_compile_options() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    let mut stmt = conn.prepare("PRAGMA compile_options").unwrap();
    let options: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
        "allocation statistics are on: {options:?}"
    );
    assert!(
        !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
        "connections share one page cache: {options:?}"
    );
    // The option list is not empty by accident.
    assert!(options.iter().any(|o| o.starts_with("THREADSAFE=")));
}
