//! Connecting: the pool, TLS for `sslmode=require`, the planner settings
//! every connection starts with, and connections' lifetime (plans are made
//! again from current statistics at least every [`PLAN_LIFETIME`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use futures_util::future::BoxFuture;
use scimd_core::store::StoreError;
use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{NoTls, Socket};

use super::PgStore;
use super::retry::{Fail, cannot_reach, chain};
use super::statistics::{self, PlansValidSince};

/// Opens connections whose I/O is driven by the runtime the pool was made
/// on, whoever asks for the connection: event delivery runs on threads of
/// lower priority (`scimd_events::push`), and a connection it happened to
/// open, driven there, would then slow every request that later borrows it.
struct DrivenHere<T> {
    tls: T,
    runtime: tokio::runtime::Handle,
}

impl<T> deadpool_postgres::Connect for DrivenHere<T>
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> BoxFuture<'_, Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error>>
    {
        let (tls, config, runtime) = (self.tls.clone(), config.clone(), self.runtime.clone());
        Box::pin(async move {
            let (client, connection) = config.connect(tls).await?;
            let driver = runtime.spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "database connection ended");
                }
            });
            Ok((client, driver))
        })
    }
}

/// How long a connection serves before it is replaced. Each connection
/// plans a statement once (generic plans, see [`planner_options`]) from the
/// statistics of that moment; a plan made while tables were small can read
/// a whole index once they are large, so plans are made again this often.
pub(super) const PLAN_LIFETIME: Duration = Duration::from_secs(300);

/// The session settings every connection starts with, after the URL's own
/// `options`. Every statement scimd sends is written to be answered from
/// indexes (a point lookup, a range of the `(key, s, seq)` index, a probe
/// per row); PostgreSQL chooses a plan from statistics, and a statement
/// prepared while a table was small (a new database) kept a sequential scan
/// of it on that connection for good (a create cost 14 ms once
/// `attr_values` held 320,000 rows). So sequential scans are ruled out
/// wherever an index serves, and each statement is planned once per
/// connection (its generic plan): no re-planning per execution, and no plan
/// that flips with the data's shape.
fn planner_options(given: Option<&str>) -> String {
    let ours = "-c enable_seqscan=off -c plan_cache_mode=force_generic_plan";
    match given {
        Some(given) if !given.trim().is_empty() => format!("{given} {ours}"),
        _ => ours.to_string(),
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://` or `postgresql://`) with a pool of
    /// at most `pool_size` connections and brings the schema up to date.
    pub async fn connect(url: &str, pool_size: usize) -> Result<PgStore, StoreError> {
        PgStore::connect_with(url, pool_size, None).await
    }

    /// [`PgStore::connect`], with TLS when the URL says `sslmode=require`:
    /// the server's certificate is verified against the system's roots and
    /// the PEM certificates of `ca_file` (a private CA, as managed databases
    /// use). Without `sslmode=require` the connection is plain TCP.
    pub async fn connect_with(
        url: &str,
        pool_size: usize,
        ca_file: Option<&std::path::Path>,
    ) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid database URL: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("scimd");
        }
        config.options(planner_options(config.get_options()));
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let runtime = tokio::runtime::Handle::current();
        let manager = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Require => Manager::from_connect(
                config,
                DrivenHere {
                    tls: tls_connector(ca_file)?,
                    runtime,
                },
                manager_config,
            ),
            _ => Manager::from_connect(
                config,
                DrivenHere {
                    tls: NoTls,
                    runtime,
                },
                manager_config,
            ),
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(Duration::from_secs(30)),
                create: Some(Duration::from_secs(10)),
                recycle: Some(Duration::from_secs(5)),
            })
            .build()
            .map_err(|e| StoreError::Backend(format!("connection pool: {e}")))?;
        let alive = Arc::new(());
        let store = PgStore {
            pool,
            plans_valid_since: PlansValidSince::new(),
            _alive: alive.clone(),
            member_queues: Arc::new(Mutex::new(HashMap::new())),
            log: super::change_log::LogSwitch(true),
            recent: Arc::new(super::recent::Recent::new(super::DEFAULT_RECENT_WRITES)),
            creates: Arc::new(super::gather::Gather::for_pool(pool_size)),
            changes: Arc::new(super::gather::Gather::for_pool(pool_size)),
        };
        store.migrate().await?;
        statistics::watch(
            store.pool.clone(),
            store.plans_valid_since.clone(),
            Arc::downgrade(&alive),
        );
        super::change_log::sequence(store.pool.clone(), Arc::downgrade(&alive));
        Ok(store)
    }

    /// A pooled connection younger than [`PLAN_LIFETIME`]: an older one is
    /// closed and another taken (or made), so that no connection keeps for
    /// long the plans it made from old statistics.
    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object, Fail> {
        loop {
            let client = self.pool.get().await.map_err(|e| {
                Fail::Store(cannot_reach(format!("database connection: {}", chain(&e))))
            })?;
            let metrics = deadpool_postgres::Object::metrics(&client);
            if metrics.age() < PLAN_LIFETIME && self.plans_valid_since.admits(metrics.created) {
                return Ok(client);
            }
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// TLS for `sslmode=require`, with ring (no process-wide provider needed).
fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let tls_error = |what: String| StoreError::Backend(format!("database TLS: {what}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is not ours to refuse.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| tls_error(format!("reading {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(tls_error(format!(
                "{} holds no certificate",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(tls_error(
            "no trusted certificate authority: give --database-ca-file".into(),
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_error(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
