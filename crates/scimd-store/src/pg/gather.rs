//! Writes gathered under load: at most [`Gather::runners`] runners write
//! at once, and while they are busy new writes queue; the next free runner
//! takes everything queued (up to [`Gathered::MOST`], at most one write per
//! resource) and writes it in one statement, committed as it ends. A write
//! under light load is written alone, as soon as it arrives; under load,
//! the per-statement cost (a round trip, the executor's start-up of a
//! dozen plan nodes, a commit and its flush) is shared. Runners are tasks of
//! their own: a caller that goes away never abandons the writes of others.
//! What each kind of write does with its batch is its own
//! ([`super::creates`], [`super::changes`]).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};

use super::PgStore;

/// A kind of write that runners write together.
pub(super) trait Gathered: Send + Sized + 'static {
    /// Most writes in one batch.
    const MOST: usize;
    /// The metric recording each batch's size.
    const BATCH_METRIC: &'static str;
    /// The resource the write changes, if it exists already: a batch holds
    /// at most one write of each (one statement cannot change a row twice).
    fn resource(&self) -> Option<i64>;
    /// The store's queue of this kind.
    fn queue(store: &PgStore) -> &Gather<Self>;
    /// Writes `batch` and answers each of its callers.
    fn write(store: &PgStore, batch: Vec<Self>) -> impl Future<Output = ()> + Send;
}

/// The writes of one kind waiting, and how many runners are writing.
pub(super) struct Gather<J> {
    state: Mutex<Queue<J>>,
    /// Most runners at once: an eighth of the connection pool, at least
    /// one (the rest of the pool serves reads and other writes).
    runners: usize,
}

struct Queue<J> {
    waiting: VecDeque<J>,
    running: usize,
}

impl<J: Gathered> Gather<J> {
    pub(super) fn for_pool(pool_size: usize) -> Gather<J> {
        Gather {
            state: Mutex::new(Queue {
                waiting: VecDeque::new(),
                running: 0,
            }),
            runners: (pool_size / 8).max(1),
        }
    }

    /// The queue; it holds no invariant a panic elsewhere could break.
    fn queue(&self) -> MutexGuard<'_, Queue<J>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A runner's place among [`Gather::runners`], given back when it stops
/// (also if it panics, so that the store never runs short of runners).
struct Slot<'a, J> {
    gather: &'a Gather<J>,
    held: bool,
}

impl<J: Gathered> Slot<'_, J> {
    /// The next writes to make, or `None` (the slot given back) when none
    /// wait: checked and given back under one lock, so a write queued
    /// meanwhile sees the free place and starts a runner. A second write
    /// of a resource already taken stays queued, in its place, for the
    /// next batch.
    fn next(&mut self) -> Option<Vec<J>> {
        let mut queue = self.gather.queue();
        if queue.waiting.is_empty() {
            queue.running -= 1;
            self.held = false;
            return None;
        }
        let mut batch: Vec<J> = Vec::with_capacity(queue.waiting.len().min(J::MOST));
        let mut left = VecDeque::new();
        while let Some(job) = queue.waiting.pop_front() {
            if batch.len() == J::MOST {
                left.push_back(job);
                left.extend(queue.waiting.drain(..));
                break;
            }
            let taken = job
                .resource()
                .is_some_and(|r| batch.iter().any(|b| b.resource() == Some(r)));
            if taken {
                left.push_back(job);
            } else {
                batch.push(job);
            }
        }
        queue.waiting = left;
        Some(batch)
    }
}

impl<J> Drop for Slot<'_, J> {
    fn drop(&mut self) {
        if self.held {
            let mut queue = self.gather.state.lock().unwrap_or_else(|e| e.into_inner());
            queue.running -= 1;
        }
    }
}

impl PgStore {
    /// Queues `job`, starting a runner if fewer than the most are writing.
    pub(super) fn gather<J: Gathered>(&self, job: J) {
        let gather = J::queue(self);
        let start = {
            let mut queue = gather.queue();
            queue.waiting.push_back(job);
            let start = queue.running < gather.runners;
            if start {
                queue.running += 1;
            }
            start
        };
        if start {
            let store = self.clone();
            tokio::spawn(async move { store.run_gathered::<J>().await });
        }
    }

    /// Writes queued writes of kind `J` until none wait.
    async fn run_gathered<J: Gathered>(&self) {
        let mut slot = Slot {
            gather: J::queue(self),
            held: true,
        };
        while let Some(batch) = slot.next() {
            metrics::histogram!(J::BATCH_METRIC).record(batch.len() as f64);
            J::write(self, batch).await;
        }
    }
}
