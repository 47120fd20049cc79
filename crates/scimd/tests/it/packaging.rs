//! What packages and supervisors use: `scimd healthcheck`, completions, the
//! man page, `--version` with the commit.

use std::process::Command;

use crate::harness::Server;

fn scimd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_scimd"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test]
async fn healthcheck_exits_0_when_ready_and_1_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let ready = format!("{}/readyz", s.root);
    let out = tokio::task::spawn_blocking(move || scimd(&["healthcheck", "--url", &ready]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    s.stop().await;
    let gone = format!("{}/readyz", closed_port_root());
    let out = tokio::task::spawn_blocking(move || scimd(&["healthcheck", "--url", &gone, "--timeout", "2"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not ready"));
}

/// A loopback address where nothing listens: a port bound, then released.
fn closed_port_root() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[test]
fn completions_man_page_and_version() {
    for (shell, marker) in [("bash", "complete"), ("zsh", "#compdef scimd"), ("fish", "complete -c scimd")] {
        let out = scimd(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker) && text.contains("healthcheck"), "{shell}: {text}");
    }
    let man = scimd(&["man"]);
    assert!(man.status.success());
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(text.starts_with(".ie") || text.starts_with(".TH"), "{text}");
    assert!(text.contains("scimd") && text.contains("healthcheck"), "{text}");
    let version = scimd(&["--version"]);
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(text.starts_with(&format!("scimd {} (", env!("CARGO_PKG_VERSION"))), "{text}");
    let commit = text.trim().rsplit('(').next().unwrap().trim_end_matches(')');
    assert!(
        commit == "unknown" || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
}

/// `scimd config show`: one configuration from the file, `SCIMD_*`
/// variables and flags, in that order; secrets masked; unknown keys refused
/// (naming key and file) and unknown variables reported.
#[test]
fn config_show_layers_file_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scimd.toml");
    std::fs::write(
        &file,
        "max_count = 77\ndefault_count = 7\nheader_timeout_secs = 4\nlog_format = \"json\"\n[auth]\ntoken_lifetime_secs = 99\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scimd"))
        .args(["config", "show", "--config"])
        .arg(&file)
        .args(["--max-body", "1234"])
        .env("SCIMD_DEFAULT_COUNT", "5")
        .env("SCIMD_AUTH_REFRESH_MS", "700")
        .env("SCIMD_AUTH__SCOPE_PREFIX", "urn:x:")
        .env("SCIMD_DATABASE_URL", "postgres://scimd:hunter2@db.example/scimd")
        .env("SCIMD_DATA_DI", "/typo")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["max_count"], 77, "file: {shown}");
    assert_eq!(shown["header_timeout_secs"], 4);
    assert_eq!(shown["auth"]["token_lifetime_secs"], 99);
    assert_eq!(shown["default_count"], 5, "environment over file: {shown}");
    assert_eq!(shown["auth"]["refresh_ms"], 700);
    assert_eq!(shown["auth"]["scope_prefix"], "urn:x:");
    assert_eq!(shown["max_body"], 1234, "flag: {shown}");
    assert_eq!(shown["database_url"], "postgres://scimd:***@db.example/scimd");
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(stderr.contains("SCIMD_DATA_DI"), "unknown variable not reported: {stderr}");
    assert_eq!(shown["log_format"], "json");
    let line = stderr.lines().find(|l| l.contains("SCIMD_DATA_DI")).unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(line).is_ok(),
        "the file's log_format is how the command logs: {line}"
    );

    std::fs::write(&file, "max_cuont = 77\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scimd"))
        .args(["config", "show", "--config"])
        .arg(&file)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("max_cuont") && stderr.contains("scimd.toml"),
        "{stderr}"
    );
}

/// Text logs written to a pipe or a file carry no colour codes (they would
/// litter every line of a log file with escape sequences).
#[test]
fn text_logs_to_a_pipe_have_no_colours() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scimd"))
        .args(["config", "show", "--log-format", "text"])
        .current_dir(dir.path())
        .env("SCIMD_NO_SUCH_SETTING", "1")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("SCIMD_NO_SUCH_SETTING"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in a pipe: {stderr:?}");
}
