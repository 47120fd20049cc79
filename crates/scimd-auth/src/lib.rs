//! OAuth 2.0 for scimd: the clients that may obtain tokens, the signing keys
//! kept in the store, the tokens themselves, the scope each request needs,
//! and the protection mode.
//!
//! Architecture invariants:
//! - No HTTP framework here: the HTTP layer passes header values and form
//!   fields in and maps [`Denied`] and [`GrantError`] to RFC 6750 / RFC 6749
//!   answers.
//! - Everything shared between replicas (clients, keys, protection mode)
//!   lives in the store; what is in memory is a cache of it.

mod clients;
mod error;
mod external;
mod keys;
mod limiter;
pub mod protection;
pub mod rate;
pub mod scope;
mod token;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use scimd_core::store::{Record, RecordStore};
use serde::Serialize;
use serde_json::{Value, json};

pub use clients::{ClientInfo, Clients, Credentials};
pub use error::{AuthError, GrantError, TokenError};
pub use external::{ExternalCheck, ExternalIssuer};
pub use keys::KeyRing;
pub use protection::{Mode, Protection};
pub use scope::{Need, Scopes};
pub use token::{Grant, Tokens};

/// Name and id of the client created on first start.
pub const BOOTSTRAP_CLIENT: &str = "scim-client";
/// File in the data directory holding the bootstrap client's credentials.
pub const BOOTSTRAP_FILE: &str = "bootstrap-client.json";

/// Settings of the auth layer.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `iss` of issued tokens and of RFC 8414 metadata.
    pub issuer: String,
    /// `aud` of issued tokens, required of presented ones.
    pub audience: String,
    pub scope_prefix: String,
    pub token_lifetime: Duration,
    /// A new signing key is made this often.
    pub key_rotation: Duration,
    /// Discovery endpoints answer without a token.
    pub public_discovery: bool,
    /// BYPASS may apply although the server listens beyond loopback.
    pub bypass_allowed: bool,
    /// How often the protection mode and keys are re-read from the store.
    pub refresh_every: Duration,
    /// Failed client authentications per client from one address per
    /// window; an address alone may fail [`ADDRESS_FAILURE_FACTOR`] times
    /// as often, across clients.
    pub max_failures: u32,
    pub failure_window: Duration,
    /// Clock skew tolerated on `exp`.
    pub leeway: Duration,
    /// Tokens of this authorization server are accepted too.
    pub external: Option<ExternalIssuer>,
}

/// How many times more failed authentications one address may make, across
/// clients, than one client from it.
pub const ADDRESS_FAILURE_FACTOR: u32 = 10;

impl AuthConfig {
    pub fn new(issuer: String, audience: String) -> AuthConfig {
        AuthConfig {
            issuer,
            audience,
            scope_prefix: scope::DEFAULT_PREFIX.into(),
            token_lifetime: Duration::from_secs(300),
            key_rotation: Duration::from_secs(24 * 3600),
            public_discovery: true,
            bypass_allowed: false,
            refresh_every: Duration::from_secs(2),
            max_failures: 10,
            failure_window: Duration::from_secs(60),
            leeway: Duration::from_secs(0),
            external: None,
        }
    }
}

/// Why a request to a protected endpoint is refused (RFC 6750 section 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No bearer token: 401 without an error code.
    NoToken,
    /// 401 `invalid_token`.
    Invalid(TokenError),
    /// 403 `insufficient_scope`, naming the scope needed.
    Insufficient(String),
}

/// Fields of a token request (RFC 6749 section 4.4.2), as sent.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// The token to introspect (RFC 7662).
    pub token: Option<String>,
}

/// A successful token response (RFC 6749 section 5.1).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
}

/// The auth layer of one server.
pub struct Auth {
    config: AuthConfig,
    store: Arc<dyn RecordStore>,
    scopes: Scopes,
    /// Every SCIM scope: what the bundled client has, and a new client by default.
    scim_scopes: BTreeSet<String>,
    /// The SCIM scopes and the operational ones (`metrics.read`).
    known_scopes: BTreeSet<String>,
    ring: Arc<KeyRing>,
    tokens: Tokens,
    clients: Clients,
    /// Failures of one client from one address.
    limiter: limiter::FailureLimiter,
    /// Failures from one address, whatever the client.
    address_limiter: limiter::FailureLimiter,
    rates: rate::RateLimits,
    protection: Arc<Protection>,
    external: Option<external::External>,
}

impl Auth {
    /// Loads (or makes) the signing keys and the protection mode, and keeps
    /// both refreshed from the store while the returned value lives.
    pub async fn start(
        store: Arc<dyn RecordStore>,
        config: AuthConfig,
        endpoints: &[String],
    ) -> Result<Arc<Auth>, AuthError> {
        let auth = Arc::new(Auth::open(store, config, endpoints));
        auth.ring.rotate_if_due().await?;
        auth.protection
            .apply(protection::read(auth.store.as_ref()).await?);
        protection::watch(
            auth.store.clone(),
            &auth.protection,
            auth.config.refresh_every,
        );
        auth.refresh_rates().await?;
        let rates_of = Arc::downgrade(&auth);
        let every = auth.config.refresh_every;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(auth) = rates_of.upgrade() else {
                    return;
                };
                if let Err(e) = auth.refresh_rates().await {
                    tracing::debug!(error = %e, "client rates not re-read");
                }
            }
        });
        let weak = Arc::downgrade(&auth.ring);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(ring) = weak.upgrade() else { return };
                if let Err(e) = ring.rotate_if_due().await {
                    tracing::warn!(error = %e, "cannot refresh the signing keys");
                }
            }
        });
        Ok(auth)
    }

    /// The auth layer without background refresh, for command-line tools.
    pub fn open(store: Arc<dyn RecordStore>, config: AuthConfig, endpoints: &[String]) -> Auth {
        let scopes = Scopes::new(config.scope_prefix.clone());
        let scim_scopes = scopes.all(endpoints.iter().map(String::as_str));
        let mut known_scopes = scim_scopes.clone();
        known_scopes.extend(scopes.operational());
        let overlap = config.token_lifetime + Duration::from_secs(60);
        // Two refreshes of every other replica, and two seconds for the
        // clocks and the whole seconds keys are dated in.
        let publish_delay = config.refresh_every * 2 + Duration::from_secs(2);
        let ring = Arc::new(KeyRing::new(
            store.clone(),
            config.key_rotation,
            overlap,
            publish_delay,
        ));
        let tokens = Tokens::new(
            ring.clone(),
            config.issuer.clone(),
            config.audience.clone(),
            config.token_lifetime,
            config.leeway,
        );
        Auth {
            external: config.external.clone().map(external::External::new),
            clients: Clients::new(store.clone()),
            limiter: limiter::FailureLimiter::new(config.max_failures, config.failure_window),
            address_limiter: limiter::FailureLimiter::new(
                config.max_failures.saturating_mul(ADDRESS_FAILURE_FACTOR),
                config.failure_window,
            ),
            rates: rate::RateLimits::default(),
            protection: Arc::new(Protection::new(config.bypass_allowed)),
            ring,
            tokens,
            scopes,
            scim_scopes,
            known_scopes,
            store,
            config,
        }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// Re-reads the clients' request rates from the store.
    pub async fn refresh_rates(&self) -> Result<(), AuthError> {
        let rates = self
            .clients
            .list()
            .await?
            .into_iter()
            .filter_map(|c| c.rate.map(|r| (c.client_id, r)))
            .collect();
        self.rates.set_rates(rates);
        Ok(())
    }

    /// Counts a request of `client_id` against its rate; when over it, how
    /// long to wait.
    pub fn admit(&self, client_id: &str) -> Result<(), Duration> {
        self.rates.admit(client_id)
    }

    pub fn scim_scopes(&self) -> &BTreeSet<String> {
        &self.scim_scopes
    }

    pub fn known_scopes(&self) -> &BTreeSet<String> {
        &self.known_scopes
    }

    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    pub fn keys(&self) -> &KeyRing {
        &self.ring
    }

    /// Makes sure a signing key exists (for tools that issue tokens).
    pub async fn ensure_keys(&self) -> Result<(), AuthError> {
        self.ring.rotate_if_due().await
    }

    pub fn bypass(&self) -> bool {
        self.protection.bypass()
    }

    /// Decides whether a request may proceed. `endpoint` is the resource
    /// endpoint addressed (for [`Need::Read`] and [`Need::Write`]);
    /// `authorization` the raw `Authorization` header.
    pub async fn authorize(
        &self,
        need: Need,
        endpoint: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Option<Arc<Grant>>, Denied> {
        // BYPASS opens the SCIM routes, not the server's own records: the
        // metrics and the audit trail (every client and address) still
        // need their scopes.
        let operational = matches!(need, Need::MetricsRead | Need::AuditRead);
        if (self.bypass() && !operational)
            || (need == Need::Discovery && self.config.public_discovery)
        {
            return Ok(None);
        }
        let token = authorization
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or(Denied::NoToken)?;
        let grant = self.verify(token).await.map_err(Denied::Invalid)?;
        if let Some(scope) = self.scopes.required_ref(need, endpoint)
            && !grant.allows(&scope)
        {
            return Err(Denied::Insufficient(scope.into_owned()));
        }
        Ok(Some(grant))
    }

    /// Verifies a token of this server, or of the external issuer when one
    /// is configured and the token is not ours.
    pub async fn verify(&self, token: &str) -> Result<Arc<Grant>, TokenError> {
        if let Some(ext) = &self.external {
            let issuer = external::unverified_issuer(token);
            let ours = issuer.as_deref() == Some(self.config.issuer.as_str());
            if !ours && (ext.introspects() || issuer.as_deref() == Some(ext.issuer())) {
                return ext.verify(token).await;
            }
        }
        self.tokens.verify(token).await
    }

    /// RFC 7662 introspection of one of this server's tokens, for an
    /// authenticated client.
    pub async fn introspect(
        &self,
        token: &str,
        basic: Option<(String, String)>,
        request: &TokenRequest,
        address: &str,
    ) -> Result<Value, GrantError> {
        self.authenticate_client(basic, request, address).await?;
        let grant = self.tokens.verify(token).await.ok();
        // Tokens are verified without the store on every request (they stay
        // valid until they expire); introspection, asked rarely and about one
        // token, also tells that its client was deleted since (RFC 7662).
        let grant = match grant {
            Some(g) if self.clients.get(&g.client_id).await?.is_none() => None,
            other => other,
        };
        Ok(match grant {
            Some(grant) => json!({
                "active": true,
                "scope": grant.scopes.iter().map(String::as_str).collect::<Vec<_>>().join(" "),
                "client_id": grant.client_id,
                "sub": grant.subject,
                "exp": grant.expires,
                "iss": self.config.issuer,
                "aud": self.config.audience,
                "token_type": "Bearer",
            }),
            None => json!({ "active": false }),
        })
    }

    /// Whether a verified grant holds `need` for `endpoint` (Bulk checks
    /// each operation with it).
    pub fn allows(
        &self,
        grant: Option<&Grant>,
        need: Need,
        endpoint: Option<&str>,
    ) -> Result<(), Denied> {
        let Some(grant) = grant else {
            return Ok(());
        };
        match self.scopes.required_ref(need, endpoint) {
            Some(scope) if !grant.allows(&scope) => Err(Denied::Insufficient(scope.into_owned())),
            _ => Ok(()),
        }
    }

    /// The client_credentials grant. `basic` is the decoded HTTP Basic
    /// credentials when sent; `address` the peer, for brute-force limits.
    pub async fn grant(
        &self,
        request: TokenRequest,
        basic: Option<(String, String)>,
        address: &str,
    ) -> Result<TokenResponse, GrantError> {
        let client = self.authenticate_client(basic, &request, address).await?;
        match request.grant_type.as_deref() {
            None => return Err(GrantError::InvalidRequest("grant_type is required".into())),
            Some("client_credentials") => {}
            Some(_) => return Err(GrantError::UnsupportedGrantType),
        }
        let granted: BTreeSet<String> = match request.scope.as_deref() {
            None => client.scopes.clone(),
            Some(text) => {
                let requested = scope::parse_scope_param(text);
                let granted: BTreeSet<String> =
                    requested.intersection(&client.scopes).cloned().collect();
                if granted.is_empty() {
                    return Err(GrantError::InvalidScope(
                        "none of the requested scopes is allowed for this client".into(),
                    ));
                }
                granted
            }
        };
        self.issue(&client.client_id, &granted)
            .map_err(GrantError::Internal)
    }

    /// Client authentication by HTTP Basic or client_secret_post (one of
    /// them), behind the brute-force limiter.
    async fn authenticate_client(
        &self,
        basic: Option<(String, String)>,
        request: &TokenRequest,
        address: &str,
    ) -> Result<clients::Client, GrantError> {
        let posted = match (&request.client_id, &request.client_secret) {
            (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
            _ => None,
        };
        let (client_id, secret) = match (basic, posted) {
            (Some(_), Some(_)) => {
                return Err(GrantError::InvalidRequest(
                    "use one client authentication method, not two".into(),
                ));
            }
            (Some(c), None) | (None, Some(c)) => c,
            (None, None) => return Err(GrantError::InvalidClient),
        };
        // Per client from an address, and (more loosely) per address; never
        // per client alone: a client id is not a secret, and failures of
        // anyone who knows it must not lock out the client itself (its
        // identity provider, from its own address). The looser limit per
        // address stops one address from trying secrets across many
        // clients, while other clients behind the same address (a proxy, an
        // identity provider's shared egress) keep getting tokens.
        let client_key = format!("{client_id}@{address}");
        let blocked = self.limiter.blocked(&client_key);
        if let Some(retry_after) = blocked.max(self.address_limiter.blocked(address)) {
            return Err(GrantError::SlowDown { retry_after });
        }
        let Some(client) = self.clients.authenticate(&client_id, &secret).await? else {
            self.limiter.record_failure(&client_key);
            self.address_limiter.record_failure(address);
            tracing::warn!(client_id = %client_id, %address, "bad client credentials");
            return Err(GrantError::InvalidClient);
        };
        Ok(client)
    }

    /// Signs a token for `client_id` (also used by `scimd token`).
    pub fn issue(
        &self,
        client_id: &str,
        scopes: &BTreeSet<String>,
    ) -> Result<TokenResponse, AuthError> {
        let access_token = self.tokens.issue(client_id, scopes)?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.tokens.lifetime().as_secs(),
            scope: scopes
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    /// On the first start of an empty store, creates the bundled client with
    /// every SCIM scope and writes its credentials to `data_dir` (mode 0600).
    /// Returns them so the caller prints them once; `None` afterwards.
    pub async fn bootstrap(&self, data_dir: &Path) -> Result<Option<Credentials>, AuthError> {
        if self
            .store
            .record_get("setting", "bootstrapped")
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let created = match self
            .clients
            .create(
                BOOTSTRAP_CLIENT,
                Some(BOOTSTRAP_CLIENT),
                self.scim_scopes.clone(),
            )
            .await
        {
            Ok(c) => Some(c),
            // Another replica bootstrapped at the same moment.
            Err(AuthError::Invalid(_)) => None,
            Err(e) => return Err(e),
        };
        self.store
            .record_insert(
                "setting",
                Record {
                    id: "bootstrapped".into(),
                    data: json!({ "at": now_text() }),
                },
                scimd_core::changelog::Change::operational(
                    scimd_core::changelog::Op::Setting,
                    "setting",
                    "bootstrapped",
                ),
            )
            .await?;
        if let Some(credentials) = &created {
            write_private(
                &data_dir.join(BOOTSTRAP_FILE),
                &json!({
                    "client_id": credentials.client_id,
                    "client_secret": credentials.client_secret,
                    "scopes": credentials.scopes,
                }),
            )?;
        }
        Ok(created)
    }

    /// RFC 8414 authorization server metadata.
    pub fn metadata(&self, base: &str) -> Value {
        json!({
            "issuer": self.config.issuer,
            "token_endpoint": format!("{base}/oauth/token"),
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "introspection_endpoint": format!("{base}/oauth/introspect"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": self.known_scopes,
            "response_types_supported": [],
            "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        })
    }
}

/// Decodes an HTTP Basic `Authorization` header into client id and secret,
/// each form-urlencoded as RFC 6749 section 2.3.1 requires.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

fn form_decode(text: &str) -> Option<String> {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn write_private(path: &Path, value: &Value) -> Result<(), AuthError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let text =
        serde_json::to_string_pretty(value).map_err(|e| AuthError::Invalid(e.to_string()))?;
    let mut file = options
        .open(path)
        .map_err(|e| AuthError::Invalid(format!("writing {}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .map_err(|e| AuthError::Invalid(format!("writing {}: {e}", path.display())))
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn now_text() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20client:s%3Acret+x"));
        assert_eq!(
            parse_basic(&header),
            Some(("my client".into(), "s:cret x".into()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }
}
