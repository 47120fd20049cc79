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
//! one that grew by more rows than it held when last analysed here (it more
//! than doubled, or was empty and now holds [`MIN_ROWS`]) is analysed here
//! and then, without waiting for autovacuum, and every connection opened
//! before is closed when it is next taken from the pool, so that no plan
//! made from statistics at least twice off survives. Each table is analysed
//! at most a logarithmic number of times as it grows.
//!
//! Growth is counted in live rows, not in changes: a steady stream of
//! PATCHes changes every row of `resources` many times over without making
//! a plan worse, and counting changes replaced the whole pool every few
//! seconds under such a load (every connection forked and every statement
//! planned again). A table never analysed (a new database) is analysed at
//! the first look: without statistics PostgreSQL assumes several rows per
//! key, and the hash tables of the computed-groups walk, sized from that
//! guess and cleared on every execution, were most of a point read's cost
//! while `members` was empty and unanalysed.

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
        let mut analysed_at = Sizes::new();
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
            match table_sizes(&pool).await {
                Ok(sizes) => {
                    let grown = analysed_at.grown(&sizes);
                    if grown.is_empty() {
                        continue;
                    }
                    match analyze(&pool, &grown).await {
                        Ok(()) => {
                            tracing::info!(tables = %grown.join(", "), "statistics renewed; connections will plan again");
                            analysed_at.record(&sizes, &grown);
                            since.renew();
                        }
                        Err(e) => tracing::warn!(error = %e, "ANALYZE of grown tables failed"),
                    }
                }
                // The database is down or restarting: the requests say so.
                Err(e) => tracing::debug!(error = %e, "table growth not read"),
            }
        }
    });
}

/// Live rows of each watched table, and the rows its statistics last
/// counted (-1 if never analysed).
type TableSizes = Vec<(String, i64, i64)>;

async fn table_sizes(pool: &Pool) -> Result<TableSizes, String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let rows = client
        .query(
            "SELECT s.relname::text, s.n_live_tup, c.reltuples::int8
               FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
              WHERE s.schemaname = current_schema() AND s.relname = ANY($1)",
            &[&WATCHED],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// The live rows of each table when it was last analysed here (first seen:
/// the rows its statistics counted, whoever analysed it).
struct Sizes(std::collections::HashMap<String, i64>);

impl Sizes {
    fn new() -> Sizes {
        Sizes(std::collections::HashMap::new())
    }

    /// The tables never analysed, and those that grew by more rows than
    /// they held when last analysed (and by at least [`MIN_ROWS`]).
    fn grown(&mut self, sizes: &TableSizes) -> Vec<String> {
        sizes
            .iter()
            .filter(|(table, live, counted)| {
                let then = *self.0.entry(table.clone()).or_insert(*counted);
                then < 0 || live - then >= then.max(MIN_ROWS)
            })
            .map(|(table, _, _)| table.clone())
            .collect()
    }

    /// `analysed` were analysed at the sizes of `sizes`.
    fn record(&mut self, sizes: &TableSizes, analysed: &[String]) {
        for (table, live, _) in sizes {
            if analysed.contains(table) {
                self.0.insert(table.clone(), *live);
            }
        }
    }
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
