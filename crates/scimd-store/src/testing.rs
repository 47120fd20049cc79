//! A PostgreSQL for tests (feature `testing`; the store's own tests include
//! this file by path). `SCIMD_TEST_DATABASE_URL` names a server to use
//! (`SCIMD_TEST_DATABASE_CA`: the CA of its TLS certificate, if any);
//! otherwise the PostgreSQL binaries found on this machine start a
//! throwaway cluster, once per test process, on a free loopback port. A
//! watcher process stops it and deletes its files when the test process is
//! gone, however it ended.
//!
//! Where no PostgreSQL can be had, tests call [`unavailable`]: it says the
//! PostgreSQL tests were skipped, or fails when `SCIMD_REQUIRE_POSTGRES=1`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A PostgreSQL server that tests may create databases on.
#[derive(Debug)]
pub struct TestPostgres {
    /// A URL of the maintenance database, with rights to create databases.
    admin_url: String,
    /// The certificate authority of the server's TLS certificate, when this
    /// process started the server (it then accepts TLS).
    ca_file: Option<PathBuf>,
    /// How to control the server, when this process started it.
    control: Option<Control>,
}

/// A server this process started: its binaries and data directory.
#[derive(Debug)]
struct Control {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    root: bool,
}

static SHARED: OnceLock<Result<TestPostgres, String>> = OnceLock::new();

/// The server for this test process; `tmp` holds a started cluster's files
/// (pass `env!("CARGO_TARGET_TMPDIR")`). `Err` says why there is none.
pub fn shared(tmp: &Path) -> Result<&'static TestPostgres, String> {
    SHARED
        .get_or_init(|| match std::env::var("SCIMD_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Ok(TestPostgres {
                admin_url: url,
                // The CA of that server's certificate, when it has TLS on.
                ca_file: std::env::var_os("SCIMD_TEST_DATABASE_CA")
                    .filter(|ca| !ca.is_empty())
                    .map(PathBuf::from),
                control: None,
            }),
            _ => launch(tmp, ""),
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A server of this test process's own, started here whatever
/// `SCIMD_TEST_DATABASE_URL` says, so that a test may stop and restart it
/// (fault tests). `options` are added to the server's command line. One per
/// process: a test binary of its own.
pub fn private(tmp: &Path, options: &str) -> Result<TestPostgres, String> {
    launch(tmp, options)
}

impl TestPostgres {
    /// Restarts a server this process started: `mode` is pg_ctl's shutdown
    /// mode (`fast`: clients are disconnected and the server shuts down
    /// cleanly; `immediate`: it stops at once and recovers from the WAL).
    pub fn restart(&self, mode: &str) -> Result<(), String> {
        let control = self
            .control
            .as_ref()
            .ok_or("this server was not started by this process")?;
        let mut restart = pg_command(control.root, &control.bin.join("pg_ctl"));
        // With its log file: else the server writes to pg_ctl's output,
        // which then never ends.
        restart
            .arg("-D")
            .arg(&control.data)
            .arg("-l")
            .arg(&control.log)
            .args(["-m", mode, "-w", "-t", "60", "restart"]);
        run(restart, "pg_ctl restart")
    }
}

/// Reports that PostgreSQL tests cannot run: `Err` (the test should fail)
/// when `SCIMD_REQUIRE_POSTGRES=1`, else a notice on stderr and `Ok`.
pub fn unavailable(why: &str) -> Result<(), String> {
    let message = format!("no PostgreSQL for the tests: {why}");
    if std::env::var("SCIMD_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        return Err(format!("{message} (and SCIMD_REQUIRE_POSTGRES=1)"));
    }
    // Straight to the process's stderr: the test harness captures eprintln!.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** {message}\n*** the PostgreSQL tests were SKIPPED (set SCIMD_TEST_DATABASE_URL, or install PostgreSQL)\n"
    );
    Ok(())
}

/// A database name for a test key (such as a test's temporary directory):
/// the same key gives the same database, so a restarted server finds its
/// data.
pub fn database_name(key: &str) -> String {
    // FNV-1a: stable across processes and Rust versions, unlike `Hash`.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("scimd_t_{h:016x}")
}

impl TestPostgres {
    /// The CA that signed the server's certificate, when the server was
    /// started here with TLS on (`None` for `SCIMD_TEST_DATABASE_URL`).
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The URL of database `name`, created if it does not exist yet.
    pub async fn database(&self, name: &str) -> Result<String, String> {
        let (client, connection) = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.admin_url))?;
        let task = tokio::spawn(connection);
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(|e| format!("listing databases: {e}"))?
            .is_some();
        if !exists
            && let Err(e) = client
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await
        {
            // Created meanwhile by a concurrent caller: fine.
            let raced = e.code().is_some_and(|c| {
                *c == tokio_postgres::error::SqlState::DUPLICATE_DATABASE
                    || *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            });
            if !raced {
                return Err(format!("creating database {name}: {e:?}"));
            }
        }
        drop(client);
        let _ = task.await;
        Ok(with_database(&self.admin_url, name))
    }
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let authority_start = main.find("://").map_or(0, |i| i + 3);
    let base = match main[authority_start..].find('/') {
        Some(i) => &main[..authority_start + i],
        None => main,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// The directory of `initdb` and `pg_ctl`: `SCIMD_TEST_PG_BINDIR`, the
/// newest `/usr/lib/postgresql/*/bin` (Debian), or `pg_config --bindir`.
fn bindir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("SCIMD_TEST_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map_err(|_| "no PostgreSQL binaries (initdb, pg_ctl) found".to_string())?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if dir.join("initdb").exists() {
        Ok(dir)
    } else {
        Err("no PostgreSQL binaries (initdb, pg_ctl) found".into())
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command run as the `postgres` user when we are root (PostgreSQL
/// refuses to run as root), else as ourselves.
fn pg_command(root: bool, program: &Path) -> Command {
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Clusters left by test processes that no longer exist (a crash of the
/// machine, a killed watcher).
fn remove_stale(tmp: &Path, bin: &Path, root: bool) {
    for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("scimd-pg-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let mut stop = pg_command(root, &bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(entry.path().join("data"))
            .args(["-m", "immediate", "stop"]);
        let _ = run(stop, "pg_ctl stop");
        let _ = std::fs::remove_dir_all(entry.path());
        let _ = std::fs::remove_dir_all(format!("/tmp/scimd-pg-{pid}"));
    }
}

fn launch(tmp: &Path, options: &str) -> Result<TestPostgres, String> {
    let bin = bindir()?;
    let root = is_root();
    let _ = std::fs::create_dir_all(tmp);
    remove_stale(tmp, &bin, root);
    let pid = std::process::id();
    let base = tmp.join(format!("scimd-pg-{pid}"));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
    // Unix socket paths are short (107 bytes): not under the target dir.
    let socket_dir = PathBuf::from(format!("/tmp/scimd-pg-{pid}"));
    let _ = std::fs::remove_dir_all(&socket_dir);
    std::fs::create_dir_all(&socket_dir)
        .map_err(|e| format!("creating {}: {e}", socket_dir.display()))?;
    if root {
        let mut chown = Command::new("chown");
        chown.args(["-R", "postgres:"]).arg(&base).arg(&socket_dir);
        run(chown, "chown")?;
    }
    let data = base.join("data");
    // From here on, whatever fails, the files go when this process does.
    spawn_watcher(pid, &bin, &data, &base, &socket_dir, root)?;
    let mut initdb = pg_command(root, &bin.join("initdb"));
    initdb.arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--no-locale",
        "--no-sync",
    ]);
    run(initdb, "initdb")?;
    let ca_file = tls_files(&base, &data, root)?;
    let mut last = String::new();
    // Another process may take the port between our probe and the start.
    for _ in 0..5 {
        let port = free_port()?;
        let mut start = pg_command(root, &bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(base.join("postgres.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                // A throwaway cluster: no fsync (scimd's durability is the
                // server's commit, which these tests do not crash).
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 \
                 -c fsync=off -c synchronous_commit=on -c full_page_writes=off -c ssl=on {options}",
                socket_dir.display()
            ))
            .arg("start");
        match run(start, "pg_ctl start") {
            Ok(()) => {
                return Ok(TestPostgres {
                    admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                    ca_file: Some(ca_file),
                    control: Some(Control {
                        bin,
                        data,
                        log: base.join("postgres.log"),
                        root,
                    }),
                });
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A certificate authority (its PEM in `base/ca.pem`, returned) and a
/// certificate it signed for 127.0.0.1, installed as the server's
/// (`server.crt`, `server.key` in the data directory).
fn tls_files(base: &Path, data: &Path, root: bool) -> Result<PathBuf, String> {
    let fail = |e: rcgen::Error| format!("making test certificates: {e}");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "scimd test CA");
    let ca_key = rcgen::KeyPair::generate().map_err(fail)?;
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(fail)?;
    let server_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(fail)?;
    let server_key = rcgen::KeyPair::generate().map_err(fail)?;
    let server = server_params.signed_by(&server_key, &ca).map_err(fail)?;
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok::<PathBuf, String>(path)
    };
    let ca_file = write(base.join("ca.pem"), ca.pem())?;
    let crt = write(data.join("server.crt"), server.pem())?;
    let key = write(data.join("server.key"), server_key.serialize_pem())?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("chmod {}: {e}", key.display()))?;
    }
    if root {
        let mut chown = Command::new("chown");
        chown.arg("postgres:").arg(&crt).arg(&key);
        run(chown, "chown")?;
    }
    Ok(ca_file)
}

/// Starts, in a session of its own (so that Ctrl-C on the tests does not
/// kill it), a shell that waits for this process to end, then stops the
/// cluster and deletes its files.
fn spawn_watcher(
    pid: u32,
    bin: &Path,
    data: &Path,
    base: &Path,
    socket_dir: &Path,
    root: bool,
) -> Result<(), String> {
    const SCRIPT: &str = r#"
while kill -0 "$1" 2>/dev/null; do sleep 1; done
if [ -d "$3" ]; then
  if [ "$6" = 1 ]; then runuser -u postgres -- "$2" -D "$3" -m immediate stop
  else "$2" -D "$3" -m immediate stop; fi
fi
rm -rf "$4" "$5"
"#;
    Command::new("setsid")
        .args(["sh", "-c", SCRIPT, "scimd-pg-watcher"])
        .arg(pid.to_string())
        .arg(bin.join("pg_ctl"))
        .arg(data)
        .arg(base)
        .arg(socket_dir)
        .arg(if root { "1" } else { "0" })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting the cluster watcher: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_replace_the_path() {
        assert_eq!(
            with_database("postgres://u:p@h:5/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h", "x"), "postgresql://h/x");
        assert_eq!(database_name("a"), database_name("a"));
        assert_ne!(database_name("a"), database_name("b"));
    }
}
