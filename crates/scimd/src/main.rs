//! `scimd`: the command line. `scimd` alone is `scimd serve`.
//!
//! Settings are layered: built-in defaults, then `scimd.toml` (or `--config`),
//! then `SCIMD_*` environment variables, then command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use scimd::{Config, export_to, import_from, serve, shutdown_signal};
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug)]
#[command(
    name = "scimd",
    version,
    about = "A SCIM 2.0 identity provisioning server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Write every resource, membership and record of the store as NDJSON.
    Export(TransferArgs),
    /// Read an export into an empty store (SQLite or PostgreSQL).
    Import(TransferArgs),
}

#[derive(clap::Args, Debug, Clone)]
struct TransferArgs {
    /// The store, as for `serve` (--database-url, --data-dir, --config ...).
    #[command(flatten)]
    store: ServeArgs,
    /// The NDJSON file; `-` is standard output (export) or input (import).
    #[arg(long, short, default_value = "-")]
    file: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args, Debug, Clone, Default)]
struct ServeArgs {
    /// Configuration file (default: ./scimd.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [default 127.0.0.1:8080; env SCIMD_LISTEN].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory for the embedded SQLite database, created [default ./scimd-data; env SCIMD_DATA_DIR].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Database URL (sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DB); overrides --data-dir [env SCIMD_DATABASE_URL].
    #[arg(long)]
    database_url: Option<String>,
    /// Most connections to a PostgreSQL database [default 16; env SCIMD_DB_POOL_SIZE].
    #[arg(long)]
    db_pool_size: Option<usize>,
    /// Public base URL used in meta.location [default http://<listen>; env SCIMD_BASE_URL].
    #[arg(long)]
    base_url: Option<String>,
    /// Largest request body in bytes [default 1048576; env SCIMD_MAX_BODY].
    #[arg(long)]
    max_body: Option<usize>,
    /// Largest page size served [default 1000; env SCIMD_MAX_COUNT].
    #[arg(long)]
    max_count: Option<u64>,
}

/// The settings that `scimd.toml` and `SCIMD_*` may set.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    listen: SocketAddr,
    data_dir: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,
    max_body: usize,
    default_count: u64,
    max_count: u64,
    db_pool_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        let d = Config::default();
        Settings {
            listen: d.listen,
            data_dir: d.data_dir,
            database_url: None,
            base_url: None,
            max_body: d.max_body,
            default_count: d.default_count,
            max_count: d.max_count,
            db_pool_size: d.db_pool_size,
        }
    }
}

fn settings(args: &ServeArgs) -> anyhow::Result<Config> {
    let file = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("scimd.toml"));
    if args.config.is_some() && !file.exists() {
        anyhow::bail!("configuration file {} does not exist", file.display());
    }
    let s: Settings = Figment::from(Serialized::defaults(Settings::default()))
        .merge(Toml::file(&file))
        .merge(Env::prefixed("SCIMD_").only(&[
            "listen",
            "data_dir",
            "database_url",
            "base_url",
            "max_body",
            "default_count",
            "max_count",
            "db_pool_size",
        ]))
        .extract()
        .with_context(|| {
            format!(
                "reading settings ({} and SCIMD_* variables)",
                file.display()
            )
        })?;
    Ok(Config {
        listen: args.listen.unwrap_or(s.listen),
        data_dir: args.data_dir.clone().unwrap_or(s.data_dir),
        database_url: args.database_url.clone().or(s.database_url),
        base_url: args.base_url.clone().or(s.base_url),
        max_body: args.max_body.unwrap_or(s.max_body),
        default_count: s.default_count,
        max_count: args.max_count.unwrap_or(s.max_count),
        db_pool_size: args.db_pool_size.unwrap_or(s.db_pool_size),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Export may write its data to standard output: logs go to stderr then.
    let logs_to_stderr = matches!(cli.command, Some(Command::Export(_) | Command::Import(_)));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if logs_to_stderr {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Export(t)) => {
            let n = export_to(&settings(&t.store)?, &t.file, !t.quiet).await?;
            tracing::info!(resources = n, "export complete");
            return Ok(());
        }
        Some(Command::Import(t)) => {
            let n = import_from(&settings(&t.store)?, &t.file, !t.quiet).await?;
            tracing::info!(resources = n, "import complete");
            return Ok(());
        }
        None => cli.serve,
    };
    let config = settings(&args)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    serve(config, listener, shutdown_signal()).await
}
