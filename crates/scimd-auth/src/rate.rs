//! Per-client request rates (`scimd client create|update --rate`, requests
//! per second): the generic cell rate algorithm, a token bucket kept as one
//! atomic "theoretical arrival time" per client, allowing one second's worth
//! of requests at once (at least one) and then one per interval. A client
//! without a rate is not limited. The rates are re-read from the store with
//! the protection mode, so a change reaches every replica within seconds;
//! each replica counts its own requests.
//!
//! The hot path takes no lock: each worker thread keeps its own copy of the
//! client → cell table, refreshed when the table's generation changes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Gives each table its own identity in the threads' copies.
static TABLES: AtomicU64 = AtomicU64::new(1);

pub struct RateLimits {
    id: u64,
    epoch: Instant,
    generation: AtomicU64,
    cells: RwLock<HashMap<String, Arc<Cell>>>,
}

/// One client's cell: its rate and its theoretical arrival time (in
/// nanoseconds since `epoch`).
struct Cell {
    rate: f64,
    interval: u64,
    window: u64,
    tat: AtomicU64,
}

impl Cell {
    fn new(rate: f64) -> Cell {
        let interval = (1e9 / rate).max(1.0) as u64;
        Cell {
            rate,
            interval,
            // One second's worth of requests at once, and at least one.
            window: interval.max(1_000_000_000),
            tat: AtomicU64::new(0),
        }
    }
}

/// A thread's copy of a table: its (table id, generation), and client →
/// cell (or none: not limited).
type Copy = ((u64, u64), HashMap<String, Option<Arc<Cell>>>);

thread_local! {
    static LOCAL: RefCell<Copy> = RefCell::new(((0, 0), HashMap::new()));
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            id: TABLES.fetch_add(1, Ordering::Relaxed),
            epoch: Instant::now(),
            generation: AtomicU64::new(1),
            cells: RwLock::new(HashMap::new()),
        }
    }
}

impl RateLimits {
    /// The rates of the clients that have one. A client whose rate did not
    /// change keeps its cell (and what it used of it).
    pub fn set_rates(&self, rates: HashMap<String, f64>) {
        let mut cells = self.cells.write().unwrap_or_else(|e| e.into_inner());
        let unchanged = cells.len() == rates.len()
            && rates
                .iter()
                .all(|(c, r)| cells.get(c).is_some_and(|cell| cell.rate == *r));
        if unchanged {
            return;
        }
        let next: HashMap<String, Arc<Cell>> = rates
            .into_iter()
            .map(|(client, rate)| {
                let cell = match cells.get(&client) {
                    Some(cell) if cell.rate == rate => Arc::clone(cell),
                    _ => Arc::new(Cell::new(rate)),
                };
                (client, cell)
            })
            .collect();
        *cells = next;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Counts one request of `client_id`; when it is over its rate, how long
    /// until it may send again.
    pub fn admit(&self, client_id: &str) -> Result<(), Duration> {
        let Some(cell) = self.cell(client_id) else {
            return Ok(());
        };
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut tat = cell.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(cell.interval);
            if next > now.saturating_add(cell.window) {
                return Err(Duration::from_nanos(next - cell.window - now));
            }
            match cell
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }

    fn cell(&self, client_id: &str) -> Option<Arc<Cell>> {
        let version = (self.id, self.generation.load(Ordering::Acquire));
        LOCAL.with_borrow_mut(|(seen, local)| {
            if *seen != version {
                local.clear();
                *seen = version;
            }
            if let Some(cell) = local.get(client_id) {
                return cell.clone();
            }
            let cell = self
                .cells
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(client_id)
                .cloned();
            local.insert(client_id.to_string(), cell.clone());
            cell
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_client_over_its_rate_waits_and_others_do_not() {
        let limits = RateLimits::default();
        limits.set_rates(HashMap::from([("slow".to_string(), 2.0)]));
        assert!(limits.admit("slow").is_ok());
        assert!(limits.admit("slow").is_ok());
        let wait = limits.admit("slow").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        for _ in 0..100 {
            assert!(limits.admit("free").is_ok());
        }
        std::thread::sleep(Duration::from_millis(550));
        assert!(limits.admit("slow").is_ok());
        // The same rates again keep what the client used.
        limits.set_rates(HashMap::from([("slow".to_string(), 2.0)]));
        assert!(limits.admit("slow").is_err());
        // Lifted.
        limits.set_rates(HashMap::new());
        assert!(limits.admit("slow").is_ok());
    }
}
