//! Plans follow the data (and the pool's connections in use and idle are
//! reported as `scimd_store_pool_connections` on the same tick). Every connection plans each statement once (a
//! generic plan, [`super::connect`]) from the statistics of that moment.
//! Statistics taken on empty or nearly empty tables give every index the
//! same cost, and PostgreSQL then breaks the tie by taking the index created
//! last: `resources_type` for a point read by id (every resource of the type
//! read, per GET) or for a probe by position. Such a plan is cheap while the
//! tables are small and ruinous once they have filled, and it lasts as long
//! as its connection.
//!
//! So a task looks at the tables whose plans matter every [`CHECK_EVERY`]:
//! one that changed by more rows than it held when last analysed (it more
//! than doubled, or was empty and now holds [`MIN_ROWS`]) is analysed here
//! and then, without waiting for autovacuum, and every connection opened
//! before is closed when it is next taken from the pool, so that no plan
//! made from statistics at least twice off survives. Each table is analysed
//! at most a logarithmic number of times as it grows.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

/// How often the tables' growth is looked at.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Below this many changed rows, no table is analysed: whatever the plan,
/// reading a few hundred rows costs little.
const MIN_ROWS: i64 = 1_000;

/// The tables whose statistics decide the plans of every request.
const WATCHED: &[&str] = &["resources", "members", "attr_values", "unique_values"];

/// Connections opened before this instant hold plans made from statistics
/// that have since been replaced.
#[derive(Clone)]
pub(super) struct PlansValidSince(Arc<Mutex<Instant>>);

impl PlansValidSince {
    pub(super) fn new() -> PlansValidSince {
        PlansValidSince(Arc::new(Mutex::new(Instant::now())))
    }

    /// Whether a connection opened at `opened` may keep its plans.
    pub(super) fn admits(&self, opened: Instant) -> bool {
        // A poisoned lock only means a panic elsewhere: the instant is intact.
        opened >= *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn renew(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
}

/// Starts the task; it ends when `alive` can no longer be upgraded (the
/// store was dropped).
pub(super) fn watch(pool: Pool, since: PlansValidSince, alive: Weak<()>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if alive.upgrade().is_none() {
                return;
            }
            let status = pool.status();
            let in_use = status.size.saturating_sub(status.available);
            metrics::gauge!("scimd_store_pool_connections", "state" => "in_use").set(in_use as f64);
            metrics::gauge!("scimd_store_pool_connections", "state" => "idle")
                .set(status.available as f64);
            match grown_tables(&pool).await {
                Ok(grown) if !grown.is_empty() => match analyze(&pool, &grown).await {
                    Ok(()) => {
                        tracing::info!(tables = %grown.join(", "), "statistics renewed; connections will plan again");
                        since.renew();
                    }
                    Err(e) => tracing::warn!(error = %e, "ANALYZE of grown tables failed"),
                },
                Ok(_) => {}
                // The database is down or restarting: the requests say so.
                Err(e) => tracing::debug!(error = %e, "table growth not read"),
            }
        }
    });
}

/// The watched tables that changed by more rows than they held when last
/// analysed (and by at least [`MIN_ROWS`]).
async fn grown_tables(pool: &Pool) -> Result<Vec<String>, String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let rows = client
        .query(
            "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
              WHERE s.schemaname = current_schema() AND s.relname = ANY($1)
                AND s.n_mod_since_analyze >= GREATEST($2, c.reltuples::int8)",
            &[&WATCHED, &MIN_ROWS],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn analyze(pool: &Pool, tables: &[String]) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    // Names from WATCHED only, never from outside.
    let list: Vec<&str> = WATCHED
        .iter()
        .copied()
        .filter(|w| tables.iter().any(|t| t == w))
        .collect();
    client
        .batch_execute(&format!("ANALYZE {}", list.join(", ")))
        .await
        .map_err(|e| e.to_string())
}
