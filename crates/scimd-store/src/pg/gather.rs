//! Writes gathered under load: at most [`Gather::runners`] runners write
//! at once, and while they are busy new writes queue; the next free runner
//! takes everything queued (up to [`Gathered::MOST`], at most one write per
//! resource) and writes it in one statement, committed as it ends. A write
//! under light load is written alone, as soon as it arrives; under load,
//! the per-statement cost (a round trip, the executor's start-up of a
//! dozen plan nodes, a commit and its flush) is shared. Runners are tasks of
//! their own: a caller that goes away never abandons the writes of others.
//! A batch the database refuses (other than by a serialization failure or
//! a deadlock, re-run whole) is written again one write at a time; one
//! whose outcome is unknown is never written again ([`Together`]). The
//! statements are each kind's own ([`super::creates`], [`super::changes`]).

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, MutexGuard};

use futures_util::FutureExt;

use scimd_core::store::StoreError;
use tokio::sync::oneshot;

use super::PgStore;

/// A kind of write that runners write together.
pub(super) trait Gathered: Send + Sync + Sized + 'static {
    /// Most writes in one batch.
    const MOST: usize;
    /// The metric recording each batch's size.
    const BATCH_METRIC: &'static str;
    /// What a write's caller hears when it was written.
    type Answer: Send;
    /// The resource the write changes, if it exists already: a batch holds
    /// at most one write of each (one statement cannot change a row twice).
    fn resource(&self) -> Option<i64>;
    /// The store's queue of this kind.
    fn queue(store: &PgStore) -> &Gather<Self>;
    /// Writes `batch` in one statement; the answers in batch order.
    fn together(
        store: &PgStore,
        batch: &[Self],
    ) -> impl Future<Output = Together<Self::Answer>> + Send;
    /// Writes `self` alone.
    fn alone(
        &self,
        store: &PgStore,
    ) -> impl Future<Output = Result<Self::Answer, StoreError>> + Send;
    /// Hands the outcome to the write's caller.
    fn reply(self, outcome: Result<Self::Answer, StoreError>);
}

/// How the statement writing a batch ended.
pub(super) enum Together<A> {
    /// It committed: each write's answer (or why it cannot be read), in
    /// batch order.
    Written(Vec<Result<A, StoreError>>),
    /// The database refused it (a unique value taken, an `id` that
    /// exists): nothing was written, and each write is made again alone,
    /// so that the refusal is only its own write's.
    Refused,
    /// The database could not be reached: whether it committed is
    /// unknown, so no write is made again (each caller hears 503, as
    /// alone).
    Unreachable(String),
}

impl<A> Together<A> {
    /// How a batch statement that answered `rows` (or failed) ended: the
    /// answers `read` from the rows, or why there are none.
    pub(super) fn of(
        written: Result<Vec<tokio_postgres::Row>, StoreError>,
        read: impl FnOnce(&[tokio_postgres::Row]) -> Vec<Result<A, StoreError>>,
    ) -> Together<A> {
        match written {
            Ok(rows) => Together::Written(read(&rows)),
            Err(StoreError::Unavailable(why)) => Together::Unreachable(why),
            Err(_) => Together::Refused,
        }
    }
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
    /// Queues the write `make` builds around the channel its answer comes
    /// back on, starting a runner if fewer than the most are writing; the
    /// answer.
    pub(super) async fn gathered<J: Gathered, T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> J,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let gather = J::queue(self);
        let start = {
            let mut queue = gather.queue();
            queue.waiting.push_back(make(reply));
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
        answer
            .await
            .map_err(|_| StoreError::Backend("gathered write dropped".into()))
    }

    /// Writes queued writes of kind `J` until none wait.
    async fn run_gathered<J: Gathered>(&self) {
        let mut slot = Slot {
            gather: J::queue(self),
            held: true,
        };
        while let Some(batch) = slot.next() {
            metrics::histogram!(J::BATCH_METRIC).record(batch.len() as f64);
            // A panic in a kind's code fails its batch, not the writes
            // queued behind it: the runner goes on to them.
            let outcomes = AssertUnwindSafe(self.write_batch(&batch))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    batch
                        .iter()
                        .map(|_| Err(StoreError::Backend("the write panicked".into())))
                        .collect()
                });
            for (job, outcome) in batch.into_iter().zip(outcomes) {
                job.reply(outcome);
            }
        }
    }

    /// Each write's outcome, in `batch` order: all in one statement, or
    /// each alone if the database refused that statement.
    async fn write_batch<J: Gathered>(&self, batch: &[J]) -> Vec<Result<J::Answer, StoreError>> {
        if batch.len() > 1 {
            match J::together(self, batch).await {
                Together::Written(outcomes) => return outcomes,
                Together::Unreachable(why) => {
                    return batch
                        .iter()
                        .map(|_| Err(StoreError::Unavailable(why.clone())))
                        .collect();
                }
                Together::Refused => {}
            }
        }
        // Once the database is out of reach, the writes left are not tried
        // (each could wait for a connection as long): they hear 503 at once.
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut unreachable: Option<String> = None;
        for job in batch {
            let outcome = match &unreachable {
                Some(why) => Err(StoreError::Unavailable(why.clone())),
                None => job.alone(self).await,
            };
            if let Err(StoreError::Unavailable(why)) = &outcome {
                unreachable = Some(why.clone());
            }
            outcomes.push(outcome);
        }
        outcomes
    }
}
