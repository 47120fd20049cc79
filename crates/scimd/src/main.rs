//! `scimd`: the command line. `scimd` alone is `scimd serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use scimd::{Config, serve, shutdown_signal};

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
}

#[derive(clap::Args, Debug, Clone)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SCIMD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for the embedded SQLite database (created).
    #[arg(long, env = "SCIMD_DATA_DIR", default_value = "./scimd-data")]
    data_dir: PathBuf,
    /// Database URL (sqlite:PATH); overrides --data-dir.
    #[arg(long, env = "SCIMD_DATABASE_URL")]
    database_url: Option<String>,
    /// Public base URL used in meta.location (default: http://<listen>).
    #[arg(long, env = "SCIMD_BASE_URL")]
    base_url: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "SCIMD_MAX_BODY", default_value_t = 1024 * 1024)]
    max_body: usize,
    /// Largest page size served.
    #[arg(long, env = "SCIMD_MAX_COUNT", default_value_t = 1000)]
    max_count: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    let config = Config {
        listen: args.listen,
        data_dir: args.data_dir,
        database_url: args.database_url,
        base_url: args.base_url,
        max_body: args.max_body,
        max_count: args.max_count,
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    serve(config, listener, shutdown_signal()).await
}
