//! The scimd binary's library: configuration, wiring of store, service and
//! HTTP, and the server lifecycle. The only crate that knows every layer.

pub mod transfer;

use std::io::{BufReader, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use scimd_core::schema::Registry;
use scimd_core::service::{ResourceService, ServiceConfig};
use scimd_core::store::Store;
use scimd_http::{AppState, app};
use scimd_store::{PgStore, SqliteStore};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Effective server settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    /// Public base URL (scheme://host:port), without `/scim/v2`.
    pub base_url: Option<String>,
    pub max_body: usize,
    pub default_count: u64,
    pub max_count: u64,
    /// Most connections to a PostgreSQL database (per scimd process).
    pub db_pool_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./scimd-data"),
            database_url: None,
            base_url: None,
            max_body: 1024 * 1024,
            default_count: 100,
            max_count: 1000,
            db_pool_size: 16,
        }
    }
}

/// Where the data lives, from `database_url` (or the data directory).
enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

fn database(config: &Config) -> anyhow::Result<Database> {
    match &config.database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Database::Postgres(url.clone()))
        }
        Some(url) => {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
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
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
            (Arc::new(store), path.display().to_string())
        }
        Database::Postgres(url) => {
            let shown = redacted(&url);
            let store = PgStore::connect(&url, config.db_pool_size)
                .await
                .map_err(|e| anyhow::anyhow!("opening {shown}: {e}"))?;
            (Arc::new(store), shown)
        }
    })
}

fn builtin_registry() -> anyhow::Result<Registry> {
    Registry::builtin().map_err(|e| anyhow::anyhow!("loading schemas: {e}"))
}

/// `scimd export`: the store `config` names, as NDJSON to `path` (`-` is
/// standard output); returns the number of resources.
pub async fn export_to(config: &Config, path: &Path, progress: bool) -> anyhow::Result<u64> {
    let (store, _) = open_store(config).await?;
    let registry = builtin_registry()?;
    let mut out: Box<dyn Write + Send> = if path == Path::new("-") {
        Box::new(BufWriter::new(std::io::stdout()))
    } else {
        Box::new(BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ))
    };
    transfer::export(&*store, &registry, &mut out, progress).await
}

/// `scimd import`: an export read from `path` (`-` is standard input) into
/// the (empty) store `config` names; returns the number of resources.
pub async fn import_from(config: &Config, path: &Path, progress: bool) -> anyhow::Result<u64> {
    let (store, _) = open_store(config).await?;
    let registry = builtin_registry()?;
    let input: Box<dyn std::io::BufRead + Send> = if path == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    };
    transfer::import(&*store, &registry, input, progress).await
}

/// Serves on `listener` until `shutdown` resolves; in-flight requests finish.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (store, database) = open_store(&config).await?;
    let registry = Arc::new(builtin_registry()?);
    let local = listener.local_addr()?;
    let base = config
        .base_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let service = ResourceService::new(
        store,
        registry,
        ServiceConfig {
            base_url: format!("{}/scim/v2", base.trim_end_matches('/')),
            default_count: config.default_count,
            max_count: config.max_count,
        },
    );
    let state = AppState {
        service: Arc::new(service),
        max_body: config.max_body,
    };
    let router = app(state)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    tracing::info!(%local, %database, "scimd listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
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
