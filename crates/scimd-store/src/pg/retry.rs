//! Failures inside a transaction ([`Fail`]): which are decided outcomes,
//! which a re-run resolves (serialization failures, deadlocks: SQLSTATE
//! 40001, 40P01), which mean the server is out of reach (503); and the two
//! macros every statement runs in, which re-run the whole transaction.

use std::time::Duration;

use scimd_core::store::StoreError;
use tokio_postgres::error::SqlState;

/// How often a transaction aborted by a serialization failure or a deadlock
/// is re-run before the caller gets [`StoreError::Conflict`].
pub(super) const MAX_RETRIES: u32 = 12;

/// A failure inside a transaction: a decided outcome, or a database error
/// that may be worth a retry.
#[derive(Debug)]
pub(super) enum Fail {
    Store(StoreError),
    Db(tokio_postgres::Error),
    /// The transaction saw a concurrent change that a re-run resolves.
    Retry,
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

fn code(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.code()
}

impl Fail {
    pub(super) fn retryable(&self) -> bool {
        match self {
            Fail::Retry => true,
            Fail::Db(e) => code(e).is_some_and(|c| {
                *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
            }),
            Fail::Store(_) => false,
        }
    }

    /// A re-run, counted by its cause: `scimd_store_retries_total{sqlstate}`
    /// (40001, 40P01, or `member_gone` for a member deleted under the write).
    pub(super) fn count_retry(&self) {
        let sqlstate = match self {
            Fail::Db(e) => code(e).map_or("unknown", |c| {
                if *c == SqlState::T_R_DEADLOCK_DETECTED {
                    "40P01"
                } else {
                    "40001"
                }
            }),
            Fail::Retry => "member_gone",
            Fail::Store(_) => "unknown",
        };
        metrics::counter!("scimd_store_retries_total", "sqlstate" => sqlstate).increment(1);
    }

    pub(super) fn into_store(self) -> StoreError {
        if self.retryable() {
            return StoreError::Conflict;
        }
        match self {
            Fail::Store(e) => e,
            Fail::Db(e) if unreachable(&e) => cannot_reach(describe(&e)),
            Fail::Db(e) if is_code(&e, &SqlState::DISK_FULL) => StoreError::Full(describe(&e)),
            Fail::Db(e) => StoreError::Backend(describe(&e)),
            Fail::Retry => StoreError::Conflict,
        }
    }
}

/// Whether a database error means the server cannot be reached for now
/// (connection lost or refused, server shutting down or starting), which a
/// client may retry, rather than a failure of the request itself.
fn unreachable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(c) => {
            c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
        }
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// The store is out of reach: answered 503, and logged as an outage
/// ([`Outage`]), not once per refused request.
pub(super) fn cannot_reach(detail: String) -> StoreError {
    OUTAGE.refused(&detail);
    StoreError::Unavailable(detail)
}

/// The end of a statement run by the macros below, begun at `started`: a
/// success means the database answers (ending an outage that began before
/// it); a failure becomes a [`StoreError`].
pub(super) fn settled<T>(
    result: Result<T, Fail>,
    started: std::time::Instant,
) -> Result<T, StoreError> {
    if result.is_ok() {
        OUTAGE.reached(started);
    }
    result.map_err(Fail::into_store)
}

/// How long an outage goes between two log lines about it.
const OUTAGE_REPORT_EVERY: Duration = Duration::from_secs(60);

/// While PostgreSQL cannot be reached, every request is refused with 503;
/// the log gets one line when the outage starts, one a minute while it
/// lasts (with the number of refused requests), and one when it ends.
struct Outage {
    down: std::sync::atomic::AtomicBool,
    state: std::sync::Mutex<Option<Down>>,
}

struct Down {
    since: std::time::Instant,
    reported: std::time::Instant,
    refused: u64,
}

static OUTAGE: Outage = Outage {
    down: std::sync::atomic::AtomicBool::new(false),
    state: std::sync::Mutex::new(None),
};

impl Outage {
    fn refused(&self, detail: &str) {
        use std::sync::atomic::Ordering;
        // Counts only: a panic elsewhere while locked leaves them usable.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match state.as_mut() {
            None => {
                tracing::warn!(
                    %detail,
                    "PostgreSQL cannot be reached: requests get 503 until it is back (logged again each minute it lasts)"
                );
                *state = Some(Down {
                    since: now,
                    reported: now,
                    refused: 1,
                });
                self.down.store(true, Ordering::Release);
            }
            Some(down) => {
                down.refused += 1;
                if down.reported.elapsed() >= OUTAGE_REPORT_EVERY {
                    down.reported = now;
                    tracing::warn!(
                        %detail,
                        down_for_secs = down.since.elapsed().as_secs(),
                        refused = down.refused,
                        "PostgreSQL still cannot be reached"
                    );
                }
            }
        }
    }

    /// A statement begun at `started` succeeded. One begun before the
    /// outage was noticed proves nothing: its answer may have arrived just
    /// before the connection was lost and been read after (by a task that
    /// ran late, such as event delivery at its lower priority).
    fn reached(&self, started: std::time::Instant) {
        use std::sync::atomic::Ordering;
        if !self.down.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.as_ref().is_some_and(|down| started <= down.since) {
            return;
        }
        if let Some(down) = state.take() {
            tracing::info!(
                down_for_secs = down.since.elapsed().as_secs(),
                refused = down.refused,
                "PostgreSQL reachable again"
            );
        }
        self.down.store(false, Ordering::Release);
    }
}

/// An error and its causes, `outer: inner: …` (a failed TLS handshake says
/// why only in its source).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// The server's message and SQLSTATE when there is one (the plain `Display`
/// of a server error is only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{db} (SQLSTATE {})", db.code().code()),
        None => e.to_string(),
    }
}

pub(super) fn is_code(e: &tokio_postgres::Error, want: &SqlState) -> bool {
    code(e) == Some(want)
}

/// Waits before attempt `attempt` (1-based): exponential from 2 ms, capped
/// at 200 ms, with jitter so that colliding writers do not collide again.
pub(super) async fn backoff(attempt: u32) {
    let base = 2u64 << attempt.min(7);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) % base.max(1))
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis((base + jitter).min(200))).await;
}

/// Runs `$body` in a transaction on a pooled connection and commits; `$body`
/// may use `?` with anything convertible into [`Fail`]. The whole
/// transaction is re-run on a serialization failure or a deadlock, so the
/// body must not have effects outside the database.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:block) => {{
        let mut attempt: u32 = 0;
        loop {
            let started = std::time::Instant::now();
            let result: Result<_, $crate::pg::retry::Fail> = async {
                let mut client = $store.client().await?;
                let $tx = client.transaction().await?;
                let value = $body;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            match result {
                Err(e) if e.retryable() && attempt < $crate::pg::retry::MAX_RETRIES => {
                    e.count_retry();
                    attempt += 1;
                    $crate::pg::retry::backoff(attempt).await;
                }
                other => break $crate::pg::retry::settled(other, started),
            }
        }
    }};
}

/// Runs `$body` with a pooled connection (no explicit transaction), with the
/// same retries as [`in_transaction`].
macro_rules! with_client {
    ($store:expr, |$client:ident| $body:block) => {{
        let mut attempt: u32 = 0;
        loop {
            let started = std::time::Instant::now();
            let result: Result<_, $crate::pg::retry::Fail> = async {
                let $client = $store.client().await?;
                Ok($body)
            }
            .await;
            match result {
                Err(e) if e.retryable() && attempt < $crate::pg::retry::MAX_RETRIES => {
                    e.count_retry();
                    attempt += 1;
                    $crate::pg::retry::backoff(attempt).await;
                }
                other => break $crate::pg::retry::settled(other, started),
            }
        }
    }};
}

pub(super) use in_transaction;
pub(super) use with_client;
