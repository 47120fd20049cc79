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
use scimd::tls::TlsSource;
use scimd::{AuthOptions, Config, admin, export_to, import_from, serve, shutdown_signal};
use serde::{Deserialize, Serialize};

/// A request allocates and frees many small values (JSON trees, SQL text,
/// rows): glibc's allocator showed up at ~8% of a lookup's profile, with
/// its consolidation passes; mimalloc's thread-local free lists do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Serve,
    /// Manage the OAuth clients allowed to obtain tokens.
    Client {
        #[command(subcommand)]
        action: ClientAction,
    },
    /// Issue an access token for scripts, signed with the store's keys.
    Token {
        /// The client the token is issued to.
        #[arg(long)]
        client: String,
        /// Scopes (full names, or short ones like users.read); default: all the client may have.
        #[arg(long, num_args = 1..)]
        scopes: Vec<String>,
    },
    /// Write every resource, membership and record of the store as NDJSON.
    Export(TransferArgs),
    /// Read an export into an empty store (SQLite or PostgreSQL).
    Import(TransferArgs),
    /// Print the OpenAPI document (routes with their OAuth2 scopes).
    Openapi,
    /// Show or switch the protection mode of every scimd on the store.
    Protection {
        #[command(subcommand)]
        action: ProtectionAction,
    },
}

#[derive(clap::Args, Debug, Clone)]
struct TransferArgs {
    /// The NDJSON file; `-` is standard output (export) or input (import).
    #[arg(long, short, default_value = "-")]
    file: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum ClientAction {
    /// Register a client; prints its id and secret (shown once) as JSON.
    Create {
        name: String,
        /// Scopes (full names, or short ones like users.read); default: every SCIM scope.
        #[arg(long, num_args = 1..)]
        scopes: Vec<String>,
        /// Client id [default: random].
        #[arg(long)]
        client_id: Option<String>,
    },
    /// List clients (never their secrets).
    List,
    /// Give a client a new secret; the old one stops working.
    RotateSecret { client_id: String },
    /// Remove a client.
    Delete { client_id: String },
}

#[derive(Subcommand, Debug)]
enum ProtectionAction {
    /// `oauth` (tokens required) or `bypass` (no protection at all).
    Set { mode: String },
    /// Print the current mode.
    Show,
}

#[derive(clap::Args, Debug, Clone, Default)]
struct ServeArgs {
    /// Configuration file (default: ./scimd.toml when it exists).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Address to listen on [default 127.0.0.1:8080; env SCIMD_LISTEN].
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// Directory for the embedded SQLite database, created [default ./scimd-data; env SCIMD_DATA_DIR].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL (sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DB); overrides --data-dir [env SCIMD_DATABASE_URL].
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Most connections to a PostgreSQL database [default 16; env SCIMD_DB_POOL_SIZE].
    #[arg(long, global = true)]
    db_pool_size: Option<usize>,
    /// PEM file of certificate authorities trusted for PostgreSQL's TLS certificate, besides the system's (with sslmode=require in the URL) [env SCIMD_DATABASE_CA_FILE].
    #[arg(long, global = true)]
    database_ca_file: Option<PathBuf>,
    /// Public base URL used in meta.location [default http://<listen>; env SCIMD_BASE_URL].
    #[arg(long, global = true)]
    base_url: Option<String>,
    /// Largest request body in bytes [default 1048576; env SCIMD_MAX_BODY].
    #[arg(long, global = true)]
    max_body: Option<usize>,
    /// Largest page size served [default 1000; env SCIMD_MAX_COUNT].
    #[arg(long, global = true)]
    max_count: Option<u64>,
    /// Lifetime of issued access tokens in seconds [default 300; env SCIMD_AUTH_TOKEN_LIFETIME_SECS].
    #[arg(long, global = true)]
    token_lifetime_secs: Option<u64>,
    /// PEM certificate (chain) to serve HTTPS with [env SCIMD_TLS_CERT].
    #[arg(long, global = true, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert [env SCIMD_TLS_KEY].
    #[arg(long, global = true, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a fresh self-signed certificate, to try it out (curl -k).
    #[arg(long, global = true, conflicts_with = "tls_cert")]
    tls_self_signed: bool,
    /// Log format: text or json (one object per line) [default text; env SCIMD_LOG_FORMAT].
    #[arg(long, global = true)]
    log_format: Option<String>,
    /// Allow protection mode BYPASS on a non-loopback listen address [env SCIMD_AUTH_ALLOW_BYPASS].
    #[arg(long, global = true)]
    allow_bypass: bool,
    /// Directory of extra schema and resource type documents (*.json) [env SCIMD_SCHEMAS_DIR].
    #[arg(long, global = true)]
    schemas_dir: Option<PathBuf>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    database_ca_file: Option<PathBuf>,
    cursor_timeout_secs: u64,
    #[serde(default)]
    auth: AuthOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    #[serde(default)]
    tls_self_signed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schemas_dir: Option<PathBuf>,
    bulk_max_operations: usize,
    bulk_max_payload: usize,
    render_cache: usize,
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
            database_ca_file: None,
            cursor_timeout_secs: d.cursor_timeout_secs,
            auth: d.auth,
            tls_cert: None,
            tls_key: None,
            tls_self_signed: false,
            schemas_dir: None,
            bulk_max_operations: d.bulk_max_operations,
            bulk_max_payload: d.bulk_max_payload,
            render_cache: d.render_cache,
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
            "cursor_timeout_secs",
            "db_pool_size",
            "database_ca_file",
            "tls_cert",
            "tls_key",
            "tls_self_signed",
            "schemas_dir",
            "bulk_max_operations",
            "bulk_max_payload",
            "render_cache",
        ]))
        .merge(Env::prefixed("SCIMD_AUTH_").map(|k| format!("auth.{k}").into()))
        .extract()
        .with_context(|| {
            format!(
                "reading settings ({} and SCIMD_* variables)",
                file.display()
            )
        })?;
    let tls = match (
        args.tls_cert.clone().or(s.tls_cert),
        args.tls_key.clone().or(s.tls_key),
    ) {
        (Some(cert), Some(key)) => TlsSource::Files { cert, key },
        (None, None) if args.tls_self_signed || s.tls_self_signed => TlsSource::SelfSigned,
        (None, None) => TlsSource::Off,
        _ => anyhow::bail!("HTTPS needs both tls_cert and tls_key"),
    };
    Ok(Config {
        tls,
        listen: args.listen.unwrap_or(s.listen),
        data_dir: args.data_dir.clone().unwrap_or(s.data_dir),
        database_url: args.database_url.clone().or(s.database_url),
        base_url: args.base_url.clone().or(s.base_url),
        max_body: args.max_body.unwrap_or(s.max_body),
        default_count: s.default_count,
        max_count: args.max_count.unwrap_or(s.max_count),
        cursor_timeout_secs: s.cursor_timeout_secs,
        db_pool_size: args.db_pool_size.unwrap_or(s.db_pool_size),
        database_ca_file: args.database_ca_file.clone().or(s.database_ca_file),
        schemas_dir: args.schemas_dir.clone().or(s.schemas_dir),
        bulk_max_operations: s.bulk_max_operations,
        bulk_max_payload: s.bulk_max_payload,
        render_cache: s.render_cache,
        auth: AuthOptions {
            token_lifetime_secs: args
                .token_lifetime_secs
                .unwrap_or(s.auth.token_lifetime_secs),
            allow_bypass: args.allow_bypass || s.auth.allow_bypass,
            ..s.auth
        },
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Every command but the server prints its result (JSON, an export) on
    // standard output for scripts: logs go to stderr then.
    let logs_to_stderr = !matches!(cli.command, None | Some(Command::Serve));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // One JSON object per line (with the request id of each request's span)
    // for log pipelines; text for people.
    let json = match cli
        .serve
        .log_format
        .as_deref()
        .or(std::env::var("SCIMD_LOG_FORMAT").ok().as_deref())
    {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => anyhow::bail!("log format is text or json, not '{other}'"),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match (json, logs_to_stderr) {
        (true, true) => builder.json().with_writer(std::io::stderr).init(),
        (true, false) => builder.json().init(),
        (false, true) => builder.with_writer(std::io::stderr).init(),
        (false, false) => builder.init(),
    }
    let args = cli.serve;
    match cli.command {
        Some(Command::Serve) | None => {}
        Some(Command::Export(t)) => {
            let n = export_to(&settings(&args)?, &t.file, !t.quiet).await?;
            tracing::info!(resources = n, "export complete");
            return Ok(());
        }
        Some(Command::Import(t)) => {
            let n = import_from(&settings(&args)?, &t.file, !t.quiet).await?;
            tracing::info!(resources = n, "import complete");
            return Ok(());
        }
        Some(Command::Client { action }) => {
            let config = settings(&args)?;
            let out = match action {
                ClientAction::Create {
                    name,
                    scopes,
                    client_id,
                } => admin::client_create(&config, &name, client_id.as_deref(), &scopes).await?,
                ClientAction::List => admin::client_list(&config).await?,
                ClientAction::RotateSecret { client_id } => {
                    admin::client_rotate(&config, &client_id).await?
                }
                ClientAction::Delete { client_id } => {
                    admin::client_delete(&config, &client_id).await?
                }
            };
            return print_json(&out);
        }
        Some(Command::Token { client, scopes }) => {
            let config = settings(&args)?;
            return print_json(&admin::token(&config, &client, &scopes).await?);
        }
        Some(Command::Openapi) => {
            return print_json(&admin::openapi(&settings(&args)?)?);
        }
        Some(Command::Protection { action }) => {
            let config = settings(&args)?;
            let out = match action {
                ProtectionAction::Set { mode } => admin::protection_set(&config, &mode).await?,
                ProtectionAction::Show => admin::protection_show(&config).await?,
            };
            return print_json(&out);
        }
    };
    let config = settings(&args)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    serve(config, listener, shutdown_signal()).await
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value)?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        // A closed pipe (`scimd openapi | head`) is the reader's choice.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
