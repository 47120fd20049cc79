//! Poll-based delivery (RFC 8936): a receiver posts acknowledgements and
//! errors for the SETs it got, and is answered the next ones.

use std::time::{Duration, Instant};

use scimd_core::events::{Delivery, StreamSpec};
use scimd_core::store::StreamProgress;
use serde_json::{Map, Value};

use crate::streams::poll_url;
use crate::{EventError, Events};

/// Most SETs one poll answer carries (`maxEvents` may ask for fewer).
pub const MAX_EVENTS: u64 = 1_000;

/// How often a waiting poll looks at the log again.
const WAIT_STEP: Duration = Duration::from_millis(100);

/// Most SETs acknowledged past one that is not: a poller that keeps
/// leaving one SET unacknowledged while it acknowledges what follows then
/// gets only the SETs it left, nothing new, until it acknowledges them
/// (the stream's backlog grows meanwhile, `scimd_event_stream_behind`).
/// Without it the list of those acknowledgements, which every poll reads
/// and saves, would grow without end.
pub const MAX_PENDING_ACKS: usize = 2_000;

/// A poll request (RFC 8936 section 2.2), parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PollRequest {
    /// The jtis of the SETs received.
    pub ack: Vec<String>,
    /// The jtis of SETs received in error, with `err` and `description`.
    pub set_errs: Vec<(String, String, String)>,
    /// At most this many SETs in the answer (0: acknowledge only).
    pub max_events: u64,
    /// Answer at once even when there is nothing (otherwise wait a while).
    pub return_immediately: bool,
}

impl PollRequest {
    /// Parses a poll body; says what is wrong with one that is not valid.
    pub fn parse(body: &[u8]) -> Result<PollRequest, EventError> {
        let invalid = |why: String| EventError::Invalid(why);
        let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(body)
                .map_err(|e| invalid(format!("the poll request is not JSON: {e}")))?
        };
        let Value::Object(map) = value else {
            return Err(invalid("the poll request must be a JSON object".into()));
        };
        let mut request = PollRequest {
            max_events: MAX_EVENTS,
            ..PollRequest::default()
        };
        for (key, value) in map {
            match key.as_str() {
                "ack" => {
                    let Value::Array(items) = value else {
                        return Err(invalid("ack must be an array of jti strings".into()));
                    };
                    for item in items {
                        match item {
                            Value::String(jti) => request.ack.push(jti),
                            other => {
                                return Err(invalid(format!(
                                    "ack holds {other}, not a jti string"
                                )));
                            }
                        }
                    }
                }
                "setErrs" => {
                    let Value::Object(errs) = value else {
                        return Err(invalid(
                            "setErrs must be an object of jti → {err, description}".into(),
                        ));
                    };
                    for (jti, e) in errs {
                        let err = e.get("err").and_then(Value::as_str);
                        let Some(err) = err else {
                            return Err(invalid(format!("setErrs[{jti}] needs an err string")));
                        };
                        let description = e
                            .get("description")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        request
                            .set_errs
                            .push((jti, err.to_string(), description.to_string()));
                    }
                }
                "maxEvents" => {
                    request.max_events =
                        value.as_u64().filter(|n| *n <= MAX_EVENTS).ok_or_else(|| {
                            invalid(format!(
                                "maxEvents {value}: give a whole number from 0 to {MAX_EVENTS}"
                            ))
                        })?;
                }
                "returnImmediately" => {
                    request.return_immediately = value.as_bool().ok_or_else(|| {
                        invalid(format!("returnImmediately {value}: give true or false"))
                    })?;
                }
                // RFC 8936 leaves room for extensions; unknown members are ignored.
                _ => {}
            }
        }
        Ok(request)
    }
}

/// A poll answer (RFC 8936 section 2.3).
#[derive(Debug, Clone, PartialEq)]
pub struct PollAnswer {
    /// jti → the signed SET.
    pub sets: Map<String, Value>,
    pub more_available: bool,
}

impl Events {
    /// Answers a poll of stream `id`: the acknowledgements and errors are
    /// recorded first, then the next SETs not yet acknowledged are
    /// returned (waiting up to the configured time for one when asked).
    pub async fn poll(&self, id: &str, request: PollRequest) -> Result<PollAnswer, EventError> {
        let stream = self.stream(id).await?;
        if !matches!(stream.delivery, Delivery::Poll) {
            return Err(EventError::Invalid(format!(
                "stream '{}' is delivered by push, not polled",
                stream.name
            )));
        }
        let head = self.store.change_head().await?;
        let mut settled = Vec::new();
        for jti in request
            .ack
            .iter()
            .chain(request.set_errs.iter().map(|(jti, _, _)| jti))
        {
            let position = stream
                .position_of(jti)
                .filter(|p| *p <= head)
                .ok_or_else(|| {
                    EventError::Invalid(format!("'{jti}' is not the jti of a SET of this stream"))
                })?;
            settled.push(position);
        }
        for (jti, err, description) in &request.set_errs {
            tracing::warn!(stream = %stream.name, %jti, %err, %description, "a poller reported a SET it could not accept");
            metrics::counter!("scimd_events_rejected_total", "delivery" => "poll").increment(1);
        }
        let progress = self.settle(&stream, &settled).await?;
        // A poll stream's backlog as its poller last saw it (a push
        // stream's is kept by its worker).
        metrics::gauge!("scimd_event_stream_behind", "stream" => stream.name.clone())
            .set((head - progress.through).max(0) as f64);
        let audience = poll_url(&self.base, &stream.id);
        let deadline = Instant::now()
            + if request.return_immediately || request.max_events == 0 {
                Duration::ZERO
            } else {
                self.settings.poll_wait
            };
        loop {
            let (entries, more) = if stream.paused {
                (Vec::new(), false)
            } else {
                let mut found = self
                    .carried_after(
                        &stream,
                        progress.through,
                        &progress.acked,
                        usize::try_from(request.max_events).unwrap_or(usize::MAX),
                    )
                    .await?;
                if progress.acked.len() >= MAX_PENDING_ACKS
                    && let Some(&last) = progress.acked.last()
                {
                    // Only those left behind the acknowledged ones; no more
                    // until they are acknowledged.
                    found.entries.retain(|e| e.position < last);
                    found.more = false;
                }
                (found.entries, found.more)
            };
            if !entries.is_empty() || Instant::now() >= deadline {
                let mut sets = Map::new();
                for entry in &entries {
                    if let Some(set) = self.sign(&stream, entry, &audience).await? {
                        sets.insert(stream.jti(entry.position), Value::String(set));
                    }
                }
                metrics::counter!("scimd_events_delivered_total", "delivery" => "poll")
                    .increment(sets.len() as u64);
                return Ok(PollAnswer {
                    sets,
                    more_available: more,
                });
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
    }

    /// Records `settled` (acknowledged or reported) positions and moves
    /// the stream past every settled one that nothing unsettled precedes.
    async fn settle(
        &self,
        stream: &StreamSpec,
        settled: &[i64],
    ) -> Result<StreamProgress, EventError> {
        for _ in 0..32 {
            let mut progress = self.progress(stream).await?;
            let before = progress.clone();
            let through = progress.through;
            progress
                .acked
                .extend(settled.iter().copied().filter(|p| *p > through));
            progress.acked.sort_unstable();
            progress.acked.dedup();
            self.advance(stream, &mut progress).await?;
            if progress == before || self.store.stream_save(&stream.id, &progress).await? {
                return Ok(progress);
            }
            // Another poll of the same stream saved first: again, from it.
        }
        Err(EventError::Busy(
            "the stream is being polled concurrently; poll again".into(),
        ))
    }

    /// Moves `through` past every entry the stream carries that is
    /// acknowledged (`acked` is sorted), up to the first that is not; past
    /// the entries it does not carry too, so they are not read again.
    async fn advance(
        &self,
        stream: &StreamSpec,
        progress: &mut StreamProgress,
    ) -> Result<(), EventError> {
        'pages: loop {
            let page = (progress.acked.len() + 1).min(crate::sets::LOG_PAGE as usize);
            let found = self
                .carried_after(stream, progress.through, &[], page)
                .await?;
            for e in &found.entries {
                if progress.acked.binary_search(&e.position).is_err() {
                    break 'pages;
                }
                progress.through = e.position;
            }
            // Every carried entry up to `scanned` was acknowledged.
            progress.through = progress.through.max(found.scanned);
            if found.entries.is_empty() || !found.more {
                break;
            }
        }
        let through = progress.through;
        progress.acked.retain(|p| *p > through);
        Ok(())
    }
}
