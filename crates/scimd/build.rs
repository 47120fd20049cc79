//! `scimd --version` names the commit it was built from: `SCIMD_GIT_COMMIT`
//! when the build is given it (a container build, whose context has no
//! `.git`), else git's answer, else `unknown` (e.g. a source package).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SCIMD_GIT_COMMIT");
    let given = std::env::var("SCIMD_GIT_COMMIT")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let commit = given
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SCIMD_GIT_COMMIT={commit}");
    // Built again when another commit is checked out or made.
    for path in [
        "../../.git/HEAD",
        "../../.git/refs/heads",
        "../../.git/packed-refs",
    ] {
        // A path that does not exist would make every build run this again.
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// The checked-out commit, abbreviated as `git` does.
fn git_commit() -> Option<String> {
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
