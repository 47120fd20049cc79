//! The Prometheus exporter: one recorder per process (installed on first
//! use, shared by every server the process runs, as in the tests), the
//! build's identity as `scimd_build_info`, and the separate listener of
//! `--metrics-listen` (no authentication there: bind it where only the
//! scraper reaches).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use scimd_http::telemetry::Render;

/// Request durations: from half a millisecond to ten seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Writes committed together: by the SQLite writer in one transaction
/// (`scimd_sqlite_writer_batch_size`), by PostgreSQL creates and changes in
/// one statement (`scimd_pg_create_batch_size`, `scimd_pg_change_batch_size`).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The process's recorder, installed by the first caller; callers that come
/// meanwhile wait for it (a second server starting at the same moment must
/// not find the global recorder set and its handle not yet kept).
fn handle() -> anyhow::Result<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| install().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Installs the global recorder, records the build's identity, and starts
/// the thread that drains aged histogram buckets.
fn install() -> anyhow::Result<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| anyhow::anyhow!("another metrics recorder is installed"))?;
    metrics::gauge!(
        "scimd_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "git" => env!("SCIMD_GIT_COMMIT"),
    )
    .set(1.0);
    // The exporter keeps histograms in buckets that age: drained here.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("scimd-metrics".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        })?;
    Ok(handle)
}

/// The exposition's renderer for `GET /metrics`.
pub fn render() -> anyhow::Result<Render> {
    let handle = handle()?;
    Ok(Arc::new(move || handle.render()))
}

/// Serves `/metrics` alone on `addr`, without authentication, with the main
/// listener's `limits` (header deadline, connection cap, ...), until the
/// process ends.
pub async fn listen(
    addr: SocketAddr,
    render: Render,
    limits: crate::server::Limits,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move { scimd_http::telemetry::text(render()) }
        }),
    );
    tracing::info!(%addr, "metrics listening");
    tokio::spawn(async move {
        let forever = std::future::pending();
        let served = crate::server::serve(listener, None, app, limits, forever, Duration::ZERO);
        if let Err(e) = served.await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    Ok(())
}
