//! SCIM Events (RFC 9967) over the change log.
//!
//! A stream ([`StreamSpec`], an operational record so every replica knows
//! it) selects change-log entries; each one it carries becomes a Security
//! Event Token signed with the server's Ed25519 keys (those of the JWKS).
//! Its progress through the log ([`StreamProgress`]) is in the store, saved
//! by compare-and-swap, so replicas share it:
//! - [`poll`]: RFC 8936: a receiver asks, acknowledges by jti, may wait;
//! - [`push`]: RFC 8935: one replica at a time (a lease in the store)
//!   posts each SET in log order, retries with backoff, records what the
//!   receiver refuses, and stops at a dead-letter state after a while;
//! - [`streams`]: creating, listing, pausing and deleting streams.
//!
//! Architecture invariants:
//! - Events come from the change log only: what was not committed never
//!   becomes an event, what was committed always does (at least once; the
//!   jti is the same on every delivery, so receivers drop duplicates).
//! - A stream's progress only moves forward, past SETs that were accepted
//!   (push) or acknowledged (poll); a crash before saving it redelivers.

pub mod poll;
pub mod push;
pub mod sets;
pub mod streams;

use std::sync::Arc;
use std::time::Duration;

use scimd_auth::Auth;
use scimd_core::events::StreamSpec;
use scimd_core::schema::Registry;
use scimd_core::service::ResourceService;
use scimd_core::store::{Store, StoreError, StreamProgress};

/// Settings of event delivery.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// The longest a poll without `returnImmediately` waits for an event.
    pub poll_wait: Duration,
    /// A push receiver that has failed for this long puts its stream in
    /// the dead-letter state (`scimd stream resume` takes it out).
    pub dead_after: Duration,
    /// The longest wait between two attempts of a failing push.
    pub max_backoff: Duration,
    /// How long one push request may take.
    pub push_timeout: Duration,
    /// The nice increment of the threads that push (0: none).
    pub push_nice: i32,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            poll_wait: Duration::from_secs(15),
            dead_after: Duration::from_secs(24 * 3600),
            max_backoff: Duration::from_secs(300),
            push_timeout: Duration::from_secs(10),
            push_nice: 10,
        }
    }
}

/// Why an event operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// No stream with that id.
    #[error("no event stream '{0}'")]
    NoStream(String),
    /// The request is not one this endpoint accepts (RFC 8936
    /// `invalid_request`); says what is wrong.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed (no key loaded yet).
    #[error("signing: {0}")]
    Signing(String),
    /// Concurrent requests kept changing the stream: try again.
    #[error("{0}")]
    Busy(String),
}

/// The event publisher of one server: poll answers and push deliveries.
pub struct Events {
    store: Arc<dyn Store>,
    auth: Arc<Auth>,
    service: Arc<ResourceService>,
    /// Public base URL (scheme://host:port).
    base: String,
    settings: EventSettings,
    /// This process, as the owner of push leases.
    owner: String,
    http: reqwest::Client,
}

impl Events {
    pub fn new(
        store: Arc<dyn Store>,
        auth: Arc<Auth>,
        service: Arc<ResourceService>,
        base: &str,
        settings: EventSettings,
    ) -> Result<Events, EventError> {
        // reqwest's rustls needs a process-wide provider; ring is the one
        // scimd uses everywhere. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(settings.push_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| EventError::Invalid(format!("push client: {e}")))?;
        Ok(Events {
            store,
            auth,
            service,
            base: base.trim_end_matches('/').to_string(),
            settings,
            owner: uuid::Uuid::new_v4().to_string(),
            http,
        })
    }

    fn registry(&self) -> &Arc<Registry> {
        self.service.registry()
    }

    /// The stream `id`'s settings.
    pub async fn stream(&self, id: &str) -> Result<StreamSpec, EventError> {
        streams::load(&*self.store, id)
            .await?
            .ok_or_else(|| EventError::NoStream(id.to_string()))
    }

    /// Whether any event stream exists (the ServiceProviderConfig then
    /// advertises `securityEvents`). A store that cannot answer counts as
    /// none.
    pub async fn configured(&self) -> bool {
        streams::list(&*self.store)
            .await
            .is_ok_and(|all| !all.is_empty())
    }

    /// The scope a poller of `stream` needs.
    pub fn scope(&self, stream: &StreamSpec) -> String {
        self.scope_of(&stream.id)
    }

    /// The scope a poller of the stream with id `id` needs.
    pub fn scope_of(&self, id: &str) -> String {
        streams::scope(self.auth.scopes().prefix(), id)
    }

    /// The stream's progress, started at the log's head when it has none
    /// (a stream delivers what happens after it was made).
    async fn progress(&self, stream: &StreamSpec) -> Result<StreamProgress, EventError> {
        if let Some(p) = self.store.stream_progress(&stream.id).await? {
            return Ok(p);
        }
        let head = self.store.change_head().await?;
        self.store.stream_start(&stream.id, head).await?;
        // Deleted since its settings were read (its progress went with it):
        // the row just made would be nobody's, and hold back the pruning of
        // the change log for good.
        if self
            .store
            .record_get(scimd_core::events::STREAM_KIND, &stream.id)
            .await?
            .is_none()
        {
            self.store.stream_forget(&stream.id).await?;
            return Err(EventError::NoStream(stream.id.clone()));
        }
        self.store
            .stream_progress(&stream.id)
            .await?
            .ok_or_else(|| EventError::NoStream(stream.id.clone()))
    }
}
