//! `scimd`: the command line. `scimd` alone is `scimd serve`.
//!
//! Settings are layered: built-in defaults, then `scimd.toml` (or `--config`),
//! then `SCIMD_*` environment variables, then command-line flags.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use figment::providers::Serialized;
use scimd::{Config, LogFormat, admin, export_to, import_from, serve, shutdown_signal};
use scimd_core::changelog::Actor;

/// A request allocates and frees many small values (JSON trees, SQL text,
/// rows): glibc's allocator showed up at ~8% of a lookup's profile, with
/// its consolidation passes; mimalloc's thread-local free lists do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "scimd",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SCIMD_GIT_COMMIT"), ")"),
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
    /// Exit 0 when the server answers ready (its store answers), 1 otherwise:
    /// a container health check without curl.
    Healthcheck {
        /// The URL to ask [default: /readyz on the configured listen address].
        #[arg(long)]
        url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// SCIM event streams (RFC 9967): SETs of every change, polled or pushed.
    Stream {
        #[command(subcommand)]
        action: StreamAction,
    },
    /// The change log: who changed what, when (a table on a terminal, JSON
    /// lines otherwise). Filters combine; entries come oldest first.
    Audit(AuditArgs),
    /// The effective configuration (defaults, file, SCIMD_* variables, flags).
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff), generated from this command line.
    Man,
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
        /// Requests per second at most, answered 429 beyond [default: no limit].
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Change a client: its request rate (0: no limit).
    Update {
        client_id: String,
        /// Requests per second at most; 0 removes the limit.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// List clients (never their secrets).
    List,
    /// Give a client a new secret; the old one stops working.
    RotateSecret { client_id: String },
    /// Remove a client.
    Delete { client_id: String },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Print it as JSON, secrets masked.
    Show,
}

#[derive(Subcommand, Debug)]
enum StreamAction {
    /// Create a stream; prints it (id, poll URL and the scope a poller needs, or the push URL).
    Create {
        name: String,
        /// Receivers poll it (RFC 8936) at its poll URL.
        #[arg(long, conflicts_with = "push", required_unless_present = "push")]
        poll: bool,
        /// scimd posts each SET to this http(s) URL (RFC 8935).
        #[arg(long)]
        push: Option<String>,
        /// Only these resource types [default: all].
        #[arg(long, value_delimiter = ',')]
        resource_types: Vec<String>,
        /// Only these changes: create, put, patch, delete [default: all].
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Full events (the resource as it stands) rather than notices (the paths changed).
        #[arg(long)]
        full: bool,
    },
    /// List the streams.
    List,
    /// Show one stream (by id or name), with its progress and push state.
    Show { stream: String },
    /// Delete a stream and its progress.
    Delete { stream: String },
    /// Stop delivering a stream (its events keep accumulating).
    Pause { stream: String },
    /// Deliver a paused stream again; takes a push stream out of the dead-letter state.
    Resume { stream: String },
}

#[derive(clap::Args, Debug)]
struct AuditArgs {
    /// Only changes of this resource (or client, key, setting) id.
    #[arg(long)]
    resource_id: Option<String>,
    /// Only changes of this resource type (User, Group, ...) or record kind (client).
    #[arg(long)]
    resource_type: Option<String>,
    /// Only changes made by this OAuth client id or token subject.
    #[arg(long)]
    actor: Option<String>,
    /// Only this operation: create, replace, patch, delete, client.create, ...
    #[arg(long)]
    op: Option<String>,
    /// Only changes at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Only changes before this RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
    /// At most this many entries [default: all].
    #[arg(long)]
    limit: Option<u64>,
    /// Then wait for new changes and print each as it commits (Ctrl-C ends).
    #[arg(long)]
    follow: bool,
    /// JSON lines even on a terminal.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum ProtectionAction {
    /// `oauth` (tokens required) or `bypass` (no protection at all).
    Set { mode: String },
    /// Print the current mode.
    Show,
}

/// The flags that set configuration keys. Serialised as they are (flags not
/// given are left out), they are the last layer of the one [`Config`]: a
/// field's name is its key, and `auth` is the `[auth]` table.
#[derive(clap::Args, Debug, Clone, Default, serde::Serialize)]
struct ServeArgs {
    /// Configuration file (default: ./scimd.toml when it exists).
    #[arg(long, global = true)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address to listen on [default 127.0.0.1:8080; env SCIMD_LISTEN].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    /// Directory for the embedded SQLite database, created [default ./scimd-data; env SCIMD_DATA_DIR].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Database URL (sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DB); overrides --data-dir [env SCIMD_DATABASE_URL].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    /// Most connections to a PostgreSQL database [default 16; env SCIMD_DB_POOL_SIZE].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    db_pool_size: Option<usize>,
    /// PEM file of certificate authorities trusted for PostgreSQL's TLS certificate, besides the system's (with sslmode=require in the URL) [env SCIMD_DATABASE_CA_FILE].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    database_ca_file: Option<PathBuf>,
    /// Public base URL, used in meta.location and as the tokens' issuer [default http://<listen>, https:// with TLS; env SCIMD_BASE_URL].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,
    /// Largest request body in bytes [default 1048576; env SCIMD_MAX_BODY].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_body: Option<usize>,
    /// Largest page size served [default 1000; env SCIMD_MAX_COUNT].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_count: Option<u64>,
    /// PEM certificate (chain) to serve HTTPS with [env SCIMD_TLS_CERT].
    #[arg(long, global = true, requires = "tls_key")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert [env SCIMD_TLS_KEY].
    #[arg(long, global = true, requires = "tls_cert")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a fresh self-signed certificate, to try it out (curl -k).
    #[arg(long, global = true, conflicts_with = "tls_cert")]
    #[serde(skip_serializing_if = "not_given")]
    tls_self_signed: bool,
    /// Log format: text or json (one object per line) [default text; env SCIMD_LOG_FORMAT].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
    /// Directory of extra schema and resource type documents (*.json) [env SCIMD_SCHEMAS_DIR].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    schemas_dir: Option<PathBuf>,
    /// Also serve /metrics on this address, without authentication [env SCIMD_METRICS_LISTEN].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    auth: AuthArgs,
}

/// The flags of the `[auth]` table.
#[derive(clap::Args, Debug, Clone, Default, serde::Serialize)]
struct AuthArgs {
    /// Lifetime of issued access tokens in seconds [default 300; env SCIMD_AUTH_TOKEN_LIFETIME_SECS].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    token_lifetime_secs: Option<u64>,
    /// Allow protection mode BYPASS on a non-loopback listen address [env SCIMD_AUTH_ALLOW_BYPASS].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "not_given")]
    allow_bypass: bool,
}

/// A switch not given on the command line sets nothing.
fn not_given(switch: &bool) -> bool {
    !switch
}

/// The configuration: defaults, then the file, then `SCIMD_*`, then the
/// flags given (`scimd::config` has the layering), with the `SCIMD_*`
/// variables that name no setting (for the caller to report once logging
/// is set up).
fn settings(args: &ServeArgs) -> anyhow::Result<(Config, Vec<String>)> {
    let file = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("scimd.toml"));
    let flags = Serialized::globals(serde_json::to_value(args)?);
    scimd::load_config(&file, args.config.is_some(), flags)
}

/// Logs on standard output (the server) or standard error (every command
/// but the server, whose standard output is its result), in `format`, with
/// colours only on a terminal.
fn init_logging(format: LogFormat, to_stderr: bool) {
    use tracing_subscriber::fmt;
    use tracing_subscriber::prelude::*;
    let terminal = if to_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let logged = tracing_subscriber::registry().with(log_filter(std::env::var("RUST_LOG").ok()));
    let text = fmt::layer().with_ansi(terminal);
    match (format, to_stderr) {
        (LogFormat::Json, true) => logged.with(text.json().with_writer(std::io::stderr)).init(),
        (LogFormat::Json, false) => logged.with(text.json()).init(),
        (LogFormat::Text, true) => logged.with(text.with_writer(std::io::stderr)).init(),
        (LogFormat::Text, false) => logged.with(text).init(),
    }
}

/// What is logged: `RUST_LOG` (`info` when unset, empty or not valid). A
/// list of `target=level` directives, the usual kind, is a static filter,
/// decided once per call site; only directives on spans or fields need
/// `EnvFilter`, which looks every span up in a shared table each time a
/// request's span is entered or left (docs/benchmarks.md).
fn log_filter(
    directives: Option<String>,
) -> Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync> {
    use tracing_subscriber::filter::{EnvFilter, Targets};
    let directives = directives.filter(|d| !d.trim().is_empty());
    let Some(directives) = directives else {
        return Box::new(tracing_subscriber::filter::LevelFilter::INFO);
    };
    if let Ok(targets) = directives.parse::<Targets>() {
        return Box::new(targets);
    }
    Box::new(EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info")))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = cli.serve;
    // The configuration is read before anything is logged, since it says
    // how to log; a command that needs no configuration (completions, man,
    // healthcheck --url) still runs when it cannot be read.
    let loaded = settings(&args);
    let format = loaded
        .as_ref()
        .map_or(LogFormat::Text, |(c, _)| c.log_format);
    init_logging(format, !matches!(cli.command, None | Some(Command::Serve)));
    let config = loaded.map(|(config, unknown)| {
        for name in unknown {
            tracing::warn!(variable = %name, "unknown SCIMD_* environment variable, ignored");
        }
        config
    });
    match cli.command {
        Some(Command::Serve) | None => {}
        // Every change a command makes is logged as the CLI's.
        Some(command) => return Actor::cli().scope(run_command(command, config)).await,
    };
    let config = config?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    serve(config, listener, shutdown_signal()).await
}

/// A command other than `serve`.
async fn run_command(command: Command, config: anyhow::Result<Config>) -> anyhow::Result<()> {
    match command {
        Command::Serve => Ok(()),
        Command::Audit(a) => {
            let filters = scimd_core::changelog::AuditFilters {
                resource_id: a.resource_id,
                resource_type: a.resource_type,
                actor: a.actor,
                op: a.op,
                since: a.since,
                until: a.until,
            };
            let format = scimd::audit::Format::detect(a.json);
            scimd::audit::run(&config?, &filters, a.limit, a.follow, format).await
        }
        Command::Stream { action } => {
            let config = config?;
            let out = match action {
                StreamAction::Create {
                    name,
                    poll: _,
                    push,
                    resource_types,
                    events,
                    full,
                } => {
                    let new = scimd_events::streams::NewStream {
                        name,
                        push_url: push,
                        resource_types,
                        events,
                        full,
                    };
                    scimd::streams::create(&config, new).await?
                }
                StreamAction::List => scimd::streams::list(&config).await?,
                StreamAction::Show { stream } => scimd::streams::show(&config, &stream).await?,
                StreamAction::Delete { stream } => scimd::streams::delete(&config, &stream).await?,
                StreamAction::Pause { stream } => {
                    scimd::streams::pause(&config, &stream, true).await?
                }
                StreamAction::Resume { stream } => {
                    scimd::streams::pause(&config, &stream, false).await?
                }
            };
            print_json(&out)
        }
        Command::Export(t) => {
            let n = export_to(&config?, &t.file, !t.quiet).await?;
            tracing::info!(resources = n, "export complete");
            Ok(())
        }
        Command::Import(t) => {
            let n = import_from(&config?, &t.file, !t.quiet).await?;
            tracing::info!(resources = n, "import complete");
            Ok(())
        }
        Command::Client { action } => {
            let config = config?;
            let out = match action {
                ClientAction::Create {
                    name,
                    scopes,
                    client_id,
                    rate,
                } => {
                    admin::client_create(&config, &name, client_id.as_deref(), &scopes, rate)
                        .await?
                }
                ClientAction::Update { client_id, rate } => {
                    admin::client_update(&config, &client_id, rate).await?
                }
                ClientAction::List => admin::client_list(&config).await?,
                ClientAction::RotateSecret { client_id } => {
                    admin::client_rotate(&config, &client_id).await?
                }
                ClientAction::Delete { client_id } => {
                    admin::client_delete(&config, &client_id).await?
                }
            };
            print_json(&out)
        }
        Command::Token { client, scopes } => {
            let config = config?;
            print_json(&admin::token(&config, &client, &scopes).await?)
        }
        Command::Openapi => print_json(&admin::openapi(&config?)?),
        Command::Healthcheck { url, timeout } => {
            let url = match url {
                Some(url) => url,
                None => scimd::health::readyz_url(&config?),
            };
            let ready = scimd::health::check(&url, std::time::Duration::from_secs(timeout)).await;
            if let Err(why) = &ready {
                eprintln!("not ready: {why}");
            }
            std::process::exit(if ready.is_ok() { 0 } else { 1 });
        }
        Command::Config {
            action: ConfigAction::Show,
        } => print_json(&serde_json::to_value(config?)?),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "scimd", &mut script);
            print_bytes(&script)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            print_bytes(&page)
        }
        Command::Protection { action } => {
            let config = config?;
            let out = match action {
                ProtectionAction::Set { mode } => admin::protection_set(&config, &mode).await?,
                ProtectionAction::Show => admin::protection_show(&config).await?,
            };
            print_json(&out)
        }
    }
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    print_bytes(text.as_bytes())
}

/// Writes a command's result on standard output.
fn print_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        // A closed pipe (`scimd openapi | head`) is the reader's choice.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::LevelFilter;

    use super::log_filter;

    fn most_detailed(directives: Option<&str>) -> Option<LevelFilter> {
        log_filter(directives.map(String::from)).max_level_hint()
    }

    #[test]
    fn rust_log_sets_what_is_logged_and_info_stands_in_for_nothing_usable() {
        assert_eq!(most_detailed(None), Some(LevelFilter::INFO));
        assert_eq!(most_detailed(Some(" ")), Some(LevelFilter::INFO));
        assert_eq!(most_detailed(Some("warn")), Some(LevelFilter::WARN));
        assert_eq!(
            most_detailed(Some("warn,scimd_store=debug")),
            Some(LevelFilter::DEBUG)
        );
        // A directive on a span's fields: only `EnvFilter` reads it.
        assert_eq!(
            most_detailed(Some("warn,[request{method=PUT}]=trace")),
            Some(LevelFilter::TRACE)
        );
        assert_eq!(most_detailed(Some("scimd=loud")), Some(LevelFilter::INFO));
    }
}
