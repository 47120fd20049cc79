//! The server's configuration: one [`Config`], layered with figment from
//! the defaults, `scimd.toml` (or `--config`), `SCIMD_*` environment
//! variables and the command line's flags, in that order. Unknown keys in
//! the file are refused (naming the key and the file); unknown `SCIMD_*`
//! variables are reported at start. Secrets (`Secret`, the password in a
//! [`DatabaseUrl`]) never print: `Debug` and `scimd config show` mask them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use scimd_auth::{ExternalCheck, ExternalIssuer};
use serde::{Deserialize, Serialize};

use crate::server;
use crate::tls::TlsSource;

/// A secret setting: shown as `***` by `Debug` and when serialised.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

/// A database URL, whose password (`postgres://user:PASSWORD@host/db`)
/// `Debug`, `Display` and serialisation show as `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, password included, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password masked.
    pub fn masked(&self) -> String {
        let url = &self.0;
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.clone();
        };
        let Some((userinfo, host)) = rest.rsplit_once('@') else {
            return url.clone();
        };
        match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.clone(),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

impl From<String> for DatabaseUrl {
    fn from(value: String) -> DatabaseUrl {
        DatabaseUrl(value)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(value: &str) -> DatabaseUrl {
        DatabaseUrl(value.to_string())
    }
}

/// How logs are written: text for people (colours only on a terminal), or
/// one JSON object per line for log pipelines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The server's settings: the one definition, layered by [`load`] from the
/// defaults, `scimd.toml`, `SCIMD_*` variables and flags; what `scimd config
/// show` prints (secrets masked).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://…` (overrides `data_dir`).
    pub database_url: Option<DatabaseUrl>,
    /// Public base URL (scheme://host:port), without `/scim/v2`.
    pub base_url: Option<String>,
    pub max_body: usize,
    pub default_count: u64,
    pub max_count: u64,
    /// Lifetime of a paging cursor.
    pub cursor_timeout_secs: u64,
    pub auth: AuthOptions,
    /// PEM certificate (chain) to serve HTTPS with (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// HTTPS with a throwaway self-signed certificate.
    pub tls_self_signed: bool,
    /// Most connections to a PostgreSQL database (per scimd process).
    pub db_pool_size: usize,
    /// Resources whose last write a PostgreSQL store remembers, so that
    /// their next PATCH or PUT skips its read (0: none); each costs about
    /// four times the document's size.
    pub recent_writes: usize,
    /// PEM certificates trusted for a PostgreSQL server's TLS certificate
    /// (with `sslmode=require`), besides the system's roots.
    pub database_ca_file: Option<PathBuf>,
    /// A directory of operator schema and resource type documents (`*.json`)
    /// loaded on top of the built-in ones.
    pub schemas_dir: Option<PathBuf>,
    /// Most operations in one Bulk request.
    pub bulk_max_operations: usize,
    /// Largest Bulk request body, in bytes.
    pub bulk_max_payload: usize,
    /// Whole-document renderings kept for reuse by `GET` (0 turns it off);
    /// each costs about twice the document's size.
    pub render_cache: usize,
    /// Prometheus metrics recorded and served (`/metrics`); off, their
    /// layers are not even installed.
    pub metrics: bool,
    /// A second listener serving `/metrics` without authentication.
    pub metrics_listen: Option<SocketAddr>,
    /// A request's header (and a connection's first request, and a TLS
    /// handshake) must arrive within this many seconds.
    pub header_timeout_secs: u64,
    /// A request's body must arrive whole within this many seconds of its
    /// header, however it trickles (408 otherwise).
    pub body_timeout_secs: u64,
    /// Open connections at most; one more is closed at once.
    pub max_connections: usize,
    /// Concurrent streams of one HTTP/2 connection.
    pub http2_max_streams: u32,
    /// Every committed write appends to the change log (the audit trail
    /// and the event streams read it); `false` turns it off.
    pub change_log: bool,
    /// Change-log entries older than this many days are pruned (0: kept
    /// whatever their age).
    pub change_log_retention_days: u32,
    /// At most this many change-log entries are kept, the newest (0: no
    /// limit).
    pub change_log_max_entries: u64,
    /// The longest a poll of an event stream waits for an event (RFC 8936
    /// long polling), in seconds.
    pub events_poll_wait_secs: u64,
    /// A push receiver failing this long puts its stream in the
    /// dead-letter state, in seconds.
    pub events_push_dead_after_secs: u64,
    /// The longest wait between two attempts of a failing push, in seconds.
    pub events_push_max_backoff_secs: u64,
    /// How long one push request may take, in seconds (1-10: a push lease
    /// must outlast it).
    pub events_push_timeout_secs: u64,
    /// How much lower than requests push delivery runs, as a nice
    /// increment of its threads (0-19; 0: the same priority): on a busy
    /// machine delivery gets what the writes leave, and catches up when
    /// they ease.
    pub events_push_nice: u64,
    /// `text` or `json` (one object per line, with each request's id).
    pub log_format: LogFormat,
}

impl Config {
    /// Refuses settings out of range, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let ranges: [(&str, u64, u64, u64); 16] = [
            ("max_body", self.max_body as u64, 1024, 1 << 30),
            ("max_count", self.max_count, 1, 1_000_000),
            (
                "cursor_timeout_secs",
                self.cursor_timeout_secs,
                1,
                7 * 24 * 3600,
            ),
            (
                "bulk_max_operations",
                self.bulk_max_operations as u64,
                1,
                1_000_000,
            ),
            (
                "bulk_max_payload",
                self.bulk_max_payload as u64,
                1024,
                1 << 30,
            ),
            ("db_pool_size", self.db_pool_size as u64, 1, 10_000),
            ("header_timeout_secs", self.header_timeout_secs, 1, 3600),
            ("body_timeout_secs", self.body_timeout_secs, 1, 3600),
            ("max_connections", self.max_connections as u64, 1, 1_000_000),
            (
                "http2_max_streams",
                u64::from(self.http2_max_streams),
                1,
                10_000,
            ),
            (
                "change_log_retention_days",
                u64::from(self.change_log_retention_days),
                0,
                36_500,
            ),
            ("events_poll_wait_secs", self.events_poll_wait_secs, 0, 300),
            (
                "events_push_dead_after_secs",
                self.events_push_dead_after_secs,
                1,
                30 * 24 * 3600,
            ),
            (
                "events_push_max_backoff_secs",
                self.events_push_max_backoff_secs,
                1,
                3600,
            ),
            (
                "events_push_timeout_secs",
                self.events_push_timeout_secs,
                1,
                scimd_events::push::MAX_PUSH_TIMEOUT.as_secs(),
            ),
            ("events_push_nice", self.events_push_nice, 0, 19),
        ];
        for (key, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                anyhow::bail!("{key} is {value}; it must be between {low} and {high}");
            }
        }
        if self.metrics_listen.is_some() && !self.metrics {
            anyhow::bail!("metrics_listen is set but metrics is false: nothing to serve there");
        }
        Ok(())
    }

    /// Where the server's certificate comes from.
    pub fn tls(&self) -> anyhow::Result<TlsSource> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) if self.tls_self_signed => Ok(TlsSource::SelfSigned),
            (None, None) => Ok(TlsSource::Off),
            _ => anyhow::bail!("HTTPS needs both tls_cert and tls_key"),
        }
    }

    /// The public base URL that tokens (their issuer) and links carry:
    /// `base_url`, or the address `served` (`https` when TLS is on);
    /// without a trailing slash. The server and the commands that make
    /// tokens or links for it both take it from here.
    pub fn public_base(&self, served: impl std::fmt::Display) -> String {
        let base = match &self.base_url {
            Some(url) => url.clone(),
            None if self.tls().unwrap_or_default() == TlsSource::Off => {
                format!("http://{served}")
            }
            None => format!("https://{served}"),
        };
        base.trim_end_matches('/').to_string()
    }

    /// How long the change log keeps its entries.
    pub fn retention(&self) -> scimd_core::changelog::Retention {
        scimd_core::changelog::Retention {
            max_age_days: self.change_log_retention_days,
            max_entries: self.change_log_max_entries,
        }
    }

    /// How event streams are delivered.
    pub fn event_settings(&self) -> scimd_events::EventSettings {
        use std::time::Duration;
        scimd_events::EventSettings {
            poll_wait: Duration::from_secs(self.events_poll_wait_secs),
            dead_after: Duration::from_secs(self.events_push_dead_after_secs),
            max_backoff: Duration::from_secs(self.events_push_max_backoff_secs),
            push_timeout: Duration::from_secs(self.events_push_timeout_secs),
            push_nice: self.events_push_nice.min(19) as i32,
        }
    }

    /// The listener's limits.
    pub fn limits(&self) -> server::Limits {
        server::Limits {
            header_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
            body_timeout: std::time::Duration::from_secs(self.body_timeout_secs),
            max_connections: self.max_connections,
            http2_max_streams: self.http2_max_streams,
        }
    }
}

/// OAuth settings of the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthOptions {
    /// `iss` of issued tokens [default: the public base URL].
    pub issuer: Option<String>,
    /// Prefix of every SCIM scope.
    pub scope_prefix: String,
    /// Lifetime of issued access tokens, in seconds.
    pub token_lifetime_secs: u64,
    /// A new signing key is made this often, in seconds.
    pub key_rotation_secs: u64,
    /// Discovery endpoints answer without a token.
    pub public_discovery: bool,
    /// Let BYPASS apply although the server listens beyond loopback.
    pub allow_bypass: bool,
    /// How often protection mode and keys are re-read from the store (ms).
    pub refresh_ms: u64,
    /// An external authorization server whose tokens are accepted too.
    pub external: Option<ExternalOptions>,
}

/// A trusted external authorization server (`[auth.external]`): give
/// `jwks_url`, or `introspection_url` with `client_id` and `client_secret`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalOptions {
    pub issuer: String,
    pub audience: Option<String>,
    pub jwks_url: Option<String>,
    pub introspection_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
}

impl ExternalOptions {
    pub(crate) fn to_issuer(&self) -> anyhow::Result<ExternalIssuer> {
        let check = match (&self.jwks_url, &self.introspection_url) {
            (Some(url), None) => ExternalCheck::Jwks { url: url.clone() },
            (None, Some(url)) => ExternalCheck::Introspection {
                url: url.clone(),
                client_id: self
                    .client_id
                    .clone()
                    .context("auth.external.client_id is needed for introspection")?,
                client_secret: self
                    .client_secret
                    .as_ref()
                    .map(|s| s.expose().to_string())
                    .context("auth.external.client_secret is needed for introspection")?,
            },
            _ => anyhow::bail!("auth.external needs exactly one of jwks_url and introspection_url"),
        };
        Ok(ExternalIssuer {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            check,
        })
    }
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            issuer: None,
            scope_prefix: scimd_auth::scope::DEFAULT_PREFIX.into(),
            token_lifetime_secs: 300,
            key_rotation_secs: 24 * 3600,
            public_discovery: true,
            allow_bypass: false,
            refresh_ms: 2000,
            external: None,
        }
    }
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
            cursor_timeout_secs: 3600,
            auth: AuthOptions::default(),
            tls_cert: None,
            tls_key: None,
            tls_self_signed: false,
            db_pool_size: 16,
            recent_writes: scimd_store::DEFAULT_RECENT_WRITES,
            database_ca_file: None,
            schemas_dir: None,
            bulk_max_operations: 1000,
            bulk_max_payload: 4 * 1024 * 1024,
            render_cache: 10_000,
            metrics: true,
            metrics_listen: None,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections: 4096,
            http2_max_streams: 100,
            change_log: true,
            change_log_retention_days: 180,
            change_log_max_entries: 0,
            events_poll_wait_secs: 15,
            events_push_dead_after_secs: 24 * 3600,
            events_push_max_backoff_secs: 300,
            events_push_timeout_secs: 10,
            events_push_nice: 10,
            log_format: LogFormat::Text,
        }
    }
}

/// `SCIMD_*` variables that are not settings but are read by the test
/// suites.
const OTHER_PREFIXES: &[&str] = &["SCIMD_TEST_", "SCIMD_REQUIRE_"];

/// The layers: the defaults, then `file` (which must exist when `required`),
/// then `SCIMD_*` variables (`SCIMD_DATA_DIR` → `data_dir`,
/// `SCIMD_AUTH_TOKEN_LIFETIME_SECS` → `auth.token_lifetime_secs`, and any
/// key with `__` between levels: `SCIMD_AUTH__EXTERNAL__ISSUER`), then
/// `overrides` (the flags given). Unknown `SCIMD_*` variables are returned,
/// for the caller to report.
pub fn load(
    file: &Path,
    required: bool,
    overrides: Serialized<serde_json::Value>,
) -> anyhow::Result<(Config, Vec<String>)> {
    if required && !file.exists() {
        anyhow::bail!("configuration file {} does not exist", file.display());
    }
    let defaults = serde_json::to_value(Config::default())?;
    let top: Vec<String> = defaults
        .as_object()
        .map(|o| o.keys().filter(|k| *k != "auth").cloned().collect())
        .unwrap_or_default();
    let auth: Vec<String> = defaults["auth"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let unknown = unknown_variables(&top, &auth);
    let flat = top.clone();
    let config: Config = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::file(file))
        .merge(
            Env::prefixed("SCIMD_")
                .filter(move |k| flat.iter().any(|t| k.as_str().eq_ignore_ascii_case(t))),
        )
        .merge(
            Env::prefixed("SCIMD_AUTH_")
                .map(|k| format!("auth.{k}").into())
                .filter(move |k| {
                    auth.iter()
                        .any(|a| k.as_str().eq_ignore_ascii_case(&format!("auth.{a}")))
                }),
        )
        .merge(
            Env::prefixed("SCIMD_")
                .split("__")
                .filter(|k| k.as_str().contains('.')),
        )
        .merge(overrides)
        .extract()
        .with_context(|| {
            format!(
                "reading settings ({} and SCIMD_* variables)",
                file.display()
            )
        })?;
    config.tls()?;
    Ok((config, unknown))
}

/// `SCIMD_*` variables that name no setting.
fn unknown_variables(top: &[String], auth: &[String]) -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("SCIMD_"))
        .filter(|k| {
            let key = k["SCIMD_".len()..].to_ascii_lowercase();
            let known = top.contains(&key)
                || key
                    .strip_prefix("auth_")
                    .is_some_and(|a| auth.iter().any(|x| x == a))
                || key.contains("__")
                || OTHER_PREFIXES.iter().any(|p| k.starts_with(p));
            !known
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        let mut config = Config::default();
        assert!(config.validate().is_ok(), "the defaults are valid");
        config.events_push_timeout_secs = 10;
        assert!(config.validate().is_ok(), "10 s is accepted");
        config.events_push_timeout_secs = 11;
        let refused = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            refused.contains("events_push_timeout_secs is 11"),
            "{refused}"
        );
        // Values that passed and then broke every request of their kind.
        for (set, key) in [
            (
                (|c: &mut Config| c.max_count = 0) as fn(&mut Config),
                "max_count is 0",
            ),
            (|c: &mut Config| c.max_body = 0, "max_body is 0"),
            (
                |c: &mut Config| c.cursor_timeout_secs = 0,
                "cursor_timeout_secs is 0",
            ),
            (
                |c: &mut Config| c.bulk_max_operations = 0,
                "bulk_max_operations is 0",
            ),
        ] {
            let mut config = Config::default();
            set(&mut config);
            let refused = config
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(refused.contains(key), "{key}: {refused}");
        }
    }

    #[test]
    fn the_public_base_follows_tls_unless_set() {
        let mut config = Config::default();
        assert_eq!(
            config.public_base("127.0.0.1:8080"),
            "http://127.0.0.1:8080"
        );
        config.tls_self_signed = true;
        assert_eq!(
            config.public_base("127.0.0.1:8080"),
            "https://127.0.0.1:8080"
        );
        config.base_url = Some("https://scim.example.com/".into());
        assert_eq!(
            config.public_base("127.0.0.1:8080"),
            "https://scim.example.com"
        );
    }
}
