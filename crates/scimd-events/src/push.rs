//! Push-based delivery (RFC 8935): each push stream is delivered by one
//! replica at a time (a lease in the store, renewed while it works), one
//! SET after the other in log order. A SET the receiver accepts (2xx) or
//! refuses with an RFC 8935 error (400 with `err`) is passed; any other
//! answer, or none, is retried with exponential backoff and jitter, and a
//! receiver that has failed for `dead_after` puts the stream in the
//! dead-letter state until an operator resumes it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use scimd_core::events::{Delivery, StreamSpec};
use scimd_core::store::StreamProgress;
use serde_json::{Value, json};

use crate::{EventError, Events, streams};

/// How long a push lease lasts; renewed at half of it. One push request
/// may take at most [`MAX_PUSH_TIMEOUT`]: the lease outlasts it.
const LEASE: Duration = Duration::from_secs(30);

/// The longest `events_push_timeout_secs` accepted: a request that takes
/// longer could outlive the half of the lease left when it started, and
/// another replica take the stream over while it is still in flight.
pub const MAX_PUSH_TIMEOUT: Duration = Duration::from_secs(10);
const _: () = assert!(MAX_PUSH_TIMEOUT.as_secs() < LEASE.as_secs() / 2);

/// The push lease this process holds on a stream, as far as it knows.
#[derive(Debug, Default)]
struct Lease {
    /// Unix ms.
    until: i64,
}

impl Lease {
    fn half_gone(&self) -> bool {
        now_ms() + (LEASE.as_millis() as i64) / 2 > self.until
    }
}

/// SETs pushed between two saves of the progress (a crash redelivers at
/// most this many: receivers drop duplicates by jti).
const BATCH: usize = 100;

/// How often an idle stream looks for new entries.
const IDLE: Duration = Duration::from_millis(50);

/// How often the supervisor looks for push streams without a worker.
const SUPERVISE: Duration = Duration::from_secs(1);

/// The refusals a stream keeps for `scimd stream show`.
const KEPT_REJECTIONS: usize = 20;

/// The longest `err` or `description` of a refusal kept, in characters.
const KEPT_TEXT: usize = 500;

/// The most of a refusal's body read (RFC 8935's `{"err", "description"}`
/// is a few hundred bytes); the rest is not waited for.
const REFUSAL_BODY: usize = 64 * 1024;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Sets the calling thread's nice value to the process's (its main
/// thread's) plus `increment`, at most 19, whatever the thread that started
/// it had. Raising it needs no privilege; where it fails, delivery runs at
/// the process's priority and says so.
fn lower_priority(increment: i32) {
    if increment <= 0 {
        return;
    }
    let process = rustix::process::getpriority_process(Some(rustix::process::getpid()));
    let nice = (process.unwrap_or(0) + increment).min(19);
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::warn!(error = %e, "could not lower the priority of event delivery");
    }
}

/// Whether a push stream is in the dead-letter state.
pub fn is_dead(progress: &StreamProgress) -> bool {
    PushState::of(progress).dead_since.is_some()
}

/// Takes a stream out of the dead-letter state (`scimd stream resume`).
pub fn revive(progress: &mut StreamProgress) {
    let mut push = PushState::of(progress);
    push.dead_since = None;
    push.failing_since = None;
    push.attempts = 0;
    push.save(progress);
}

/// Push delivery, running while this is kept: dropped, every push worker
/// stops where it is (what it had not saved as delivered is delivered
/// again, by this process later or by another replica once the lease
/// lapses).
pub struct PushDelivery {
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// What a receiver made of one SET.
enum Outcome {
    Accepted,
    /// 400 with an RFC 8935 error: recorded, not retried.
    Refused {
        err: String,
        description: String,
    },
    /// Anything else: retried.
    Failed(String),
}

impl Events {
    /// Starts delivering every push stream, now and as they are created,
    /// while the process runs, on threads of their own whose priority is
    /// lowered by `push_nice`: when writes keep the machine busy, signing
    /// and posting a SET per change would take CPU from them (tens of
    /// microseconds a SET); delivery then gets what they leave and catches
    /// up when they ease (`scimd_event_stream_behind` shows how far
    /// behind it is).
    ///
    /// Delivery lasts as long as the returned [`PushDelivery`] is kept.
    pub fn deliver_pushes(self: &Arc<Self>) -> std::io::Result<PushDelivery> {
        let events = self.clone();
        let nice = self.settings.push_nice;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("scimd-push")
            .on_thread_start(move || lower_priority(nice))
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("scimd-push".into())
            .spawn(move || {
                lower_priority(nice);
                runtime.block_on(async move {
                    tokio::select! {
                        () = events.supervise_pushes() => {}
                        _ = stopped => {}
                    }
                });
                runtime.shutdown_background();
            })?;
        Ok(PushDelivery { _stop: stop })
    }

    /// Keeps one worker per active push stream, looking for new ones every
    /// [`SUPERVISE`].
    async fn supervise_pushes(self: Arc<Self>) {
        let running: Arc<Mutex<HashSet<String>>> = Arc::default();
        loop {
            match streams::list(&*self.store).await {
                Ok(all) => {
                    for stream in all {
                        if !matches!(stream.delivery, Delivery::Push { .. }) || stream.paused {
                            continue;
                        }
                        let fresh = running
                            .lock()
                            .map(|mut r| r.insert(stream.id.clone()))
                            .unwrap_or(false);
                        if fresh {
                            let (events, running) = (self.clone(), running.clone());
                            tokio::spawn(async move {
                                if let Err(e) = events.push_stream(&stream.id).await {
                                    tracing::warn!(stream = %stream.name, error = %e, "push delivery stopped; starting again");
                                }
                                if let Ok(mut r) = running.lock() {
                                    r.remove(&stream.id);
                                }
                            });
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "listing event streams failed"),
            }
            tokio::time::sleep(SUPERVISE).await;
        }
    }

    /// Delivers stream `id` while this process holds its lease and the
    /// stream is an active push stream.
    async fn push_stream(&self, id: &str) -> Result<(), EventError> {
        let mut lease = Lease::default();
        let mut last_skip = std::time::Instant::now();
        let mut last_gauge: Option<std::time::Instant> = None;
        loop {
            let stream = match self.stream(id).await {
                Ok(s) => s,
                Err(EventError::NoStream(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            let Delivery::Push { url } = &stream.delivery else {
                return Ok(());
            };
            if stream.paused {
                return Ok(());
            }
            // Started before the lease is asked for: the lease is a column
            // of the progress row.
            let progress = self.progress(&stream).await?;
            if !self.hold(id, &mut lease).await? {
                return Ok(()); // another replica delivers it
            }
            // Once a second: the head costs a numbering run on PostgreSQL.
            if last_gauge.is_none_or(|t| t.elapsed() >= SUPERVISE) {
                let behind = (self.store.change_head().await? - progress.through).max(0);
                metrics::gauge!("scimd_event_stream_behind", "stream" => stream.name.clone())
                    .set(behind as f64);
                last_gauge = Some(std::time::Instant::now());
            }
            if is_dead(&progress) {
                tokio::time::sleep(SUPERVISE).await;
                continue;
            }
            let found = self
                .carried_after(&stream, progress.through, &[], BATCH)
                .await?;
            if found.entries.is_empty() {
                // Nothing to send: pass the entries it does not carry, now
                // and then, so they are not read again and again.
                if found.scanned > progress.through && last_skip.elapsed() >= SUPERVISE {
                    let mut next = progress.clone();
                    next.through = found.scanned;
                    self.store.stream_save(id, &next).await?;
                    last_skip = std::time::Instant::now();
                }
                tokio::time::sleep(IDLE).await;
                continue;
            }
            let mut next = progress.clone();
            let mut wait = None;
            let mut all = true;
            // Accepted since the state was last brought up to date: counted
            // into it once, before anything else changes it.
            let mut accepted = 0;
            // Parsed once for the batch, not by each request (its IDNA
            // processing showed in the delivery profile).
            let target = reqwest::Url::parse(url);
            for entry in &found.entries {
                // Checked before each request: one may take the whole push
                // timeout, which half a lease outlasts, and the scan and
                // signing before the first one take time too.
                if lease.half_gone() {
                    all = false;
                    break; // renew the lease before going on
                }
                let outcome = match (self.sign(&stream, entry, url).await?, &target) {
                    (Some(set), Ok(target)) => self.post(target, set).await,
                    (Some(_), Err(e)) => Outcome::Failed(format!("the push URL: {e}")),
                    (None, _) => Outcome::Accepted,
                };
                if !matches!(outcome, Outcome::Accepted) {
                    delivered(&mut next, std::mem::take(&mut accepted));
                }
                match outcome {
                    Outcome::Accepted => {
                        next.through = entry.position;
                        accepted += 1;
                    }
                    Outcome::Refused { err, description } => {
                        next.through = entry.position;
                        rejected(&mut next, &stream.jti(entry.position), &err, &description);
                        tracing::warn!(stream = %stream.name, %err, %description, "the push receiver refused a SET; not retried");
                        metrics::counter!("scimd_events_rejected_total", "delivery" => "push")
                            .increment(1);
                    }
                    Outcome::Failed(why) => {
                        metrics::counter!("scimd_events_push_failures_total").increment(1);
                        wait = Some(self.failed(&stream, &mut next, why));
                        all = false;
                        break;
                    }
                }
            }
            delivered(&mut next, accepted);
            if all && !found.more {
                next.through = next.through.max(found.scanned);
            }
            // Saved or not (changed meanwhile: `scimd stream resume`, or
            // another replica after a lapse), the backoff applies.
            self.store.stream_save(id, &next).await?;
            if let Some(wait) = wait {
                self.wait_holding(id, &mut lease, wait).await?;
            }
        }
    }

    /// Takes or renews the lease when half of it is gone; `false` when
    /// another replica holds it.
    async fn hold(&self, id: &str, lease: &mut Lease) -> Result<bool, EventError> {
        if !lease.half_gone() {
            return Ok(true);
        }
        let now = now_ms();
        let until = now + LEASE.as_millis() as i64;
        if !self.store.stream_lease(id, &self.owner, now, until).await? {
            return Ok(false);
        }
        lease.until = until;
        Ok(true)
    }

    /// Sleeps `wait` (a backoff) without letting the lease lapse meanwhile,
    /// so that no other replica takes the stream and retries at once.
    async fn wait_holding(
        &self,
        id: &str,
        lease: &mut Lease,
        wait: Duration,
    ) -> Result<(), EventError> {
        let end = std::time::Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || !self.hold(id, lease).await? {
                return Ok(());
            }
            tokio::time::sleep(left.min(LEASE / 4)).await;
        }
    }

    /// One SET posted to `url`.
    async fn post(&self, url: &reqwest::Url, set: String) -> Outcome {
        let sent = self
            .http
            .post(url.clone())
            .header("content-type", "application/secevent+jwt")
            .header("accept", "application/json")
            .body(set)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("no answer: {e}")),
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Accepted;
        }
        if status.as_u16() == 400 {
            let body: Value =
                serde_json::from_slice(&head_of(response).await).unwrap_or(Value::Null);
            if let Some(err) = body.get("err").and_then(Value::as_str) {
                return Outcome::Refused {
                    err: err.to_string(),
                    description: body
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                };
            }
        }
        Outcome::Failed(format!("HTTP {status}"))
    }

    /// Records a failed attempt; the stream turns dead after failing for
    /// `dead_after`. Returns how long to wait before the next attempt.
    fn failed(&self, stream: &StreamSpec, progress: &mut StreamProgress, why: String) -> Duration {
        let now = now_ms();
        let mut push = PushState::of(progress);
        push.attempts += 1;
        let attempts = push.attempts;
        let since = *push.failing_since.get_or_insert(now);
        if now - since >= self.settings.dead_after.as_millis() as i64 {
            push.dead_since = Some(now);
            tracing::error!(stream = %stream.name, error = %why, "push receiver failing too long: the stream is dead until `scimd stream resume`");
        } else {
            tracing::warn!(stream = %stream.name, error = %why, attempts, "push delivery failed; retrying");
        }
        push.last_error = Some(why);
        push.save(progress);
        backoff(attempts, self.settings.max_backoff)
    }
}

/// The start of `response`'s body, at most [`REFUSAL_BODY`] bytes.
async fn head_of(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > REFUSAL_BODY {
            body.truncate(REFUSAL_BODY);
            break;
        }
    }
    body
}

/// Exponential from 250 ms, capped, with full jitter on its upper half.
fn backoff(attempts: u64, cap: Duration) -> Duration {
    let exp = Duration::from_millis(250u64.saturating_mul(1 << attempts.min(20)));
    let ceiling = exp.min(cap);
    let half = ceiling / 2;
    half + half.mul_f64(rand::thread_rng().r#gen::<f64>())
}

/// A push stream's delivery state, kept in [`StreamProgress::push`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushState {
    /// SETs the receiver accepted.
    #[serde(default)]
    pub delivered: u64,
    /// Failed attempts since the last success.
    #[serde(default)]
    pub attempts: u64,
    /// When the current run of failures began (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Set when the receiver failed for too long: nothing is pushed until
    /// `scimd stream resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_since: Option<i64>,
    /// The latest SETs the receiver refused (RFC 8935 errors).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Value>,
}

impl PushState {
    pub fn of(progress: &StreamProgress) -> PushState {
        serde_json::from_value(progress.push.clone()).unwrap_or_default()
    }

    fn save(self, progress: &mut StreamProgress) {
        progress.push = serde_json::to_value(self).unwrap_or_else(|_| json!({}));
    }
}

/// `count` more SETs accepted (and counted in the metrics): the failures
/// before them are over.
fn delivered(progress: &mut StreamProgress, count: u64) {
    if count == 0 {
        return;
    }
    metrics::counter!("scimd_events_delivered_total", "delivery" => "push").increment(count);
    let mut push = PushState::of(progress);
    push.delivered += count;
    push.attempts = 0;
    push.failing_since = None;
    push.save(progress);
}

/// A SET the receiver refused: recorded (the latest few, their texts cut
/// short), and an answer, so the failures before it are over.
fn rejected(progress: &mut StreamProgress, jti: &str, err: &str, description: &str) {
    let mut push = PushState::of(progress);
    let cut = |text: &str| text.chars().take(KEPT_TEXT).collect::<String>();
    push.rejected.push(
        json!({"jti": jti, "err": cut(err), "description": cut(description), "at": now_ms()}),
    );
    push.attempts = 0;
    push.failing_since = None;
    if push.rejected.len() > KEPT_REJECTIONS {
        let extra = push.rejected.len() - KEPT_REJECTIONS;
        push.rejected.drain(..extra);
    }
    push.save(progress);
}
