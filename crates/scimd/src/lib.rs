//! The scimd binary's library: configuration, wiring of store, service and
//! HTTP, and the server lifecycle. The only crate that knows every layer.

pub mod admin;
pub mod audit;
mod config;
pub mod health;
pub mod server;
pub mod streams;
pub mod telemetry;
pub mod tls;

pub mod transfer;

use std::io::{BufReader, BufWriter};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use scimd_auth::{Auth, AuthConfig};
use scimd_core::schema::Registry;
use scimd_core::service::{ResourceService, ServiceConfig};
use scimd_core::store::Store;
use scimd_http::{AppState, app};
use scimd_store::{PgStore, SqliteStore};
use tokio::net::TcpListener;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

pub use config::{
    AuthOptions, Config, DatabaseUrl, ExternalOptions, LogFormat, Secret, load as load_config,
};

/// Where the data lives, from `database_url` (or the data directory).
enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

fn database(config: &Config) -> anyhow::Result<Database> {
    match &config.database_url {
        Some(url)
            if url.expose().starts_with("postgres://")
                || url.expose().starts_with("postgresql://") =>
        {
            Ok(Database::Postgres(url.expose().to_string()))
        }
        Some(url) => {
            let path = url
                .expose()
                .strip_prefix("sqlite://")
                .or_else(|| url.expose().strip_prefix("sqlite:"))
                .with_context(|| {
                    format!("unsupported database URL '{url}': use sqlite:PATH or postgres://...")
                })?;
            Ok(Database::Sqlite(PathBuf::from(path)))
        }
        None => {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("cannot create data directory {}", config.data_dir.display())
            })?;
            Ok(Database::Sqlite(config.data_dir.join("scimd.sqlite3")))
        }
    }
}

/// Every resource endpoint whose scopes exist: the loaded resource types and
/// the FIDO families the Janssen scope table names.
pub fn scope_endpoints(registry: &Registry) -> Vec<String> {
    let mut endpoints: Vec<String> = registry
        .resource_types()
        .iter()
        .map(|rt| rt.endpoint().to_string())
        .collect();
    for fido in ["FidoDevices", "Fido2Devices"] {
        if !endpoints.iter().any(|e| e.eq_ignore_ascii_case(fido)) {
            endpoints.push(fido.to_string());
        }
    }
    endpoints
}

/// The public URL goes into every `location`, `$ref` and token issuer: it
/// must be an absolute http(s) URL, the server's root (not ending in
/// `/scim/v2`), or clients get links they cannot follow.
fn check_base_url(base: &str) -> anyhow::Result<()> {
    let uri: axum::http::Uri = base
        .parse()
        .map_err(|e| anyhow::anyhow!("--base-url {base:?} is not a URL: {e}"))?;
    let web = matches!(uri.scheme_str(), Some("http" | "https"));
    if !web || uri.authority().is_none() {
        anyhow::bail!("--base-url {base:?} must be an absolute http:// or https:// URL");
    }
    if uri.path().trim_end_matches('/').ends_with("/scim/v2") {
        anyhow::bail!(
            "--base-url {base:?} must be the server's root, without /scim/v2 (links would \
             name /scim/v2/scim/v2)"
        );
    }
    Ok(())
}

/// The auth layer's settings for a server whose public URL is `base`.
pub fn auth_config(config: &Config, base: &str) -> anyhow::Result<AuthConfig> {
    let options = &config.auth;
    let issuer = options.issuer.clone().unwrap_or_else(|| base.to_string());
    let mut auth = AuthConfig::new(issuer, format!("{base}/scim/v2"));
    auth.scope_prefix = options.scope_prefix.clone();
    if options.token_lifetime_secs == 0 {
        anyhow::bail!(
            "token_lifetime_secs must be at least 1: a token of 0 s is expired when issued"
        );
    }
    auth.token_lifetime = Duration::from_secs(options.token_lifetime_secs);
    auth.key_rotation = Duration::from_secs(options.key_rotation_secs.max(1));
    auth.public_discovery = options.public_discovery;
    auth.refresh_every = Duration::from_millis(options.refresh_ms.max(50));
    auth.external = options
        .external
        .as_ref()
        .map(ExternalOptions::to_issuer)
        .transpose()?;
    Ok(auth)
}

async fn start_auth(
    config: &Config,
    store: Arc<dyn Store>,
    registry: &Registry,
    base: &str,
    local: SocketAddr,
) -> anyhow::Result<Arc<Auth>> {
    let mut auth_config = auth_config(config, base)?;
    auth_config.bypass_allowed = config.auth.allow_bypass || local.ip().is_loopback();
    let auth = Auth::start(store, auth_config, &scope_endpoints(registry))
        .await
        .map_err(|e| anyhow::anyhow!("starting OAuth: {e}"))?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    if let Some(credentials) = auth
        .bootstrap(&config.data_dir)
        .await
        .map_err(|e| anyhow::anyhow!("creating the bundled SCIM client: {e}"))?
    {
        let file = config.data_dir.join(scimd_auth::BOOTSTRAP_FILE);
        // Shown on a terminal only: a service's standard output goes to
        // its journal, which keeps it and is read by more people.
        let secret = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            credentials.client_secret.clone()
        } else {
            format!("(not shown here: in {})", file.display())
        };
        println!(
            "\n==== scimd: bundled SCIM client created (shown once) ====\n\
             client_id:     {}\nclient_secret: {}\nscopes:        {}\n\
             also written to {} (mode 0600)\n\
             get a token:   curl -u '{}:<secret>' -d grant_type=client_credentials {base}/oauth/token\n\
             ==========================================================\n",
            credentials.client_id,
            secret,
            credentials
                .scopes
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
            file.display(),
            credentials.client_id,
        );
    }
    if auth.bypass() {
        scimd_auth::protection::warn_bypass();
    }
    Ok(auth)
}

/// A URL fit for logs: without the password.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_string(),
    }
}

/// Opens (creating and migrating if needed) the store `config` names;
/// returns it with a description for logs.
pub async fn open_store(config: &Config) -> anyhow::Result<(Arc<dyn Store>, String)> {
    Ok(match database(config)? {
        Database::Sqlite(path) => {
            let store = SqliteStore::open(&path)
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?
                .with_change_log(config.change_log);
            (Arc::new(store), path.display().to_string())
        }
        Database::Postgres(url) => {
            let shown = redacted(&url);
            let store = PgStore::connect_with(
                &url,
                config.db_pool_size,
                config.database_ca_file.as_deref(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("opening {shown}: {e}"))?
            .with_change_log(config.change_log)
            .with_recent_writes(config.recent_writes);
            (Arc::new(store), shown)
        }
    })
}

/// The store of a command that reads or changes an existing one (export,
/// `client`, `token`, `protection`): a `--data-dir` without a database is a
/// mistake (a mistyped path would otherwise get a new empty store and, for
/// export, a "successful" backup of nothing). Only `serve` and `import`
/// create a store.
pub async fn open_existing_store(config: &Config) -> anyhow::Result<(Arc<dyn Store>, String)> {
    if let Database::Sqlite(path) = database(config)?
        && !path.exists()
    {
        anyhow::bail!(
            "no scimd store at {}: check --data-dir (or start scimd there first)",
            path.display()
        );
    }
    open_store(config).await
}

/// The built-in schemas plus those of `config.schemas_dir`. A problem names
/// the file and what is wrong with it.
pub fn load_registry(config: &Config) -> anyhow::Result<Registry> {
    let Some(dir) = &config.schemas_dir else {
        return Registry::builtin().map_err(|e| anyhow::anyhow!("loading schemas: {e}"));
    };
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the schemas directory {}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("json"))
                && p.is_file()
        })
        .collect();
    // Sorted, so that discovery lists them in a stable order.
    files.sort();
    let mut documents = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading schema file {}", file.display()))?;
        documents.push((file.display().to_string(), text));
    }
    let registry = Registry::with_custom(&documents)
        .map_err(|e| anyhow::anyhow!("invalid schema configuration in {}: {e}", dir.display()))?;
    let endpoints = scope_endpoints(&registry);
    if let Some(why) = scimd_auth::scope::family_clash(endpoints.iter().map(String::as_str)) {
        anyhow::bail!("invalid schema configuration in {}: {why}", dir.display());
    }
    Ok(registry)
}

/// `scimd export`: the store `config` names, as NDJSON to `path` (`-` is
/// standard output); returns the number of resources. A file is written
/// beside `path`, synced, and renamed over it once complete: an export that
/// fails (or is refused) leaves the previous file as it was.
pub async fn export_to(config: &Config, path: &Path, progress: bool) -> anyhow::Result<u64> {
    let (store, _) = open_existing_store(config).await?;
    let registry = load_registry(config)?;
    if path == Path::new("-") {
        let mut out = BufWriter::new(std::io::stdout());
        return transfer::export(&*store, &registry, &mut out, progress).await;
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    let partial = path.with_file_name(name);
    let written = async {
        let mut out = BufWriter::new(private_file(&partial)?);
        let n = transfer::export(&*store, &registry, &mut out, progress).await?;
        out.into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()
            .with_context(|| format!("syncing {}", partial.display()))?;
        std::fs::rename(&partial, path)
            .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
        Ok(n)
    }
    .await;
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// `path` created (or emptied) for the owner alone: an export holds the
/// store's private signing keys and its clients' secret hashes.
fn private_file(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // A file that existed keeps its mode through `open`.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", path.display()))?;
    }
    Ok(file)
}

/// `scimd import`: an export read from `path` (`-` is standard input) into
/// the (empty) store `config` names; returns the number of resources.
pub async fn import_from(config: &Config, path: &Path, progress: bool) -> anyhow::Result<u64> {
    // The input first: a missing file must not leave a new empty store.
    let input: Box<dyn std::io::BufRead + Send> = if path == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    };
    let registry = load_registry(config)?;
    let (store, _) = open_store(config).await?;
    transfer::import(&*store, &registry, input, progress).await
}

/// Requests in flight when a stop is asked get this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves on `listener` until `shutdown` resolves; in-flight requests finish.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    // Before anything is opened or announced: a certificate that cannot be
    // read stops the start, not the first handshake.
    let tls = tls::rustls_config(&config.tls()?)?;
    let (store, database) = open_store(&config).await?;
    transfer::refuse_half_imported(&*store).await?;
    let registry = Arc::new(load_registry(&config)?);
    let local = listener.local_addr()?;
    let base = config.public_base(local);
    check_base_url(&base)?;
    if config.base_url.is_none() && local.ip().is_unspecified() {
        tracing::warn!(
            %base,
            "no base_url: links, token issuers and Location headers name {base}, which other \
             hosts cannot reach; set base_url (SCIMD_BASE_URL) to the URL clients use"
        );
    }
    let auth = start_auth(&config, store.clone(), &registry, &base, local).await?;
    audit::prune_in_background(store.clone(), config.retention());
    let service = ResourceService::new(
        store.clone(),
        registry,
        ServiceConfig {
            base_url: format!("{}/scim/v2", base.trim_end_matches('/')),
            // Lowering max_count alone lowers the default page too.
            default_count: config.default_count.min(config.max_count),
            max_count: config.max_count,
            cursor_timeout: config.cursor_timeout_secs,
            bulk_max_operations: config.bulk_max_operations,
            bulk_max_payload: config.bulk_max_payload,
            render_cache: config.render_cache,
        },
    );
    let metrics = match config.metrics {
        true => Some(telemetry::render()?),
        false => None,
    };
    if let (Some(addr), Some(render)) = (config.metrics_listen, &metrics) {
        telemetry::listen(addr, render.clone(), config.limits()).await?;
    }
    let service = Arc::new(service);
    let events = Arc::new(scimd_events::Events::new(
        store.clone(),
        auth.clone(),
        service.clone(),
        &base,
        config.event_settings(),
    )?);
    let _pushing = events.deliver_pushes()?;
    let state = AppState::new(scimd_http::Shared {
        service,
        auth,
        public_base: base.clone(),
        max_body: config.max_body,
        metrics,
        events,
    });
    let body_deadline = config.limits().body_timeout;
    // Around the router as one service, not `Router::layer` (which wraps
    // every route in a boxed service cloned on each request).
    let service = tower::ServiceBuilder::new()
        // A body must arrive whole within `body_timeout` of its headers,
        // however it trickles (the extractors then answer 408).
        .map_request(move |req| scimd_http::deadline::with_body_deadline(req, body_deadline))
        .layer(SetRequestIdLayer::x_request_id(SequentialRequestId::new()))
        // The request's span. No line per response: server errors are
        // logged where they arise, once (an internal error with its detail;
        // an unreachable store once per outage).
        .layer(server::spans::layer())
        .layer(PropagateRequestIdLayer::x_request_id())
        .service(app(state));
    tracing::info!(%local, %database, "scimd listening");
    // Readiness for systemd (`Type=notify`), and the stop when it begins.
    let shutdown = async move {
        shutdown.await;
        health::notify("STOPPING=1");
    };
    health::notify("READY=1");
    server::serve(
        listener,
        tls,
        service,
        config.limits(),
        shutdown,
        SHUTDOWN_GRACE,
    )
    .await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_base_url_is_the_root_of_an_http_server() {
        assert!(super::check_base_url("https://scim.example.com").is_ok());
        assert!(super::check_base_url("https://scim.example.com/idm").is_ok());
        for bad in [
            "scim.example.com",
            "ftp://scim.example.com",
            "https://scim.example.com/scim/v2",
            "https://scim.example.com/idm/scim/v2/",
        ] {
            assert!(super::check_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            super::redacted("postgres://scimd:secret@db:5432/scimd"),
            "postgres://scimd@db:5432/scimd"
        );
        assert_eq!(
            super::redacted("postgres://db/scimd"),
            "postgres://db/scimd"
        );
    }
}

/// Request ids unique across processes and restarts: a random prefix
/// chosen at start and a counter. A UUID per request cost a `getrandom`
/// system call on every request.
#[derive(Clone)]
struct SequentialRequestId {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl SequentialRequestId {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the operating system's randomness.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        SequentialRequestId {
            prefix: format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff).into(),
            next: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        axum::http::HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}
