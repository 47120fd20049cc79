//! Access tokens: short-lived EdDSA-signed JWTs, verified against the key
//! ring and cached until they expire.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{AuthError, TokenError};
use crate::keys::KeyRing;
use crate::unix_now;

/// Verified tokens kept; the cache is emptied when it grows past this.
const CACHE_LIMIT: usize = 100_000;

/// The claims scimd puts in (and requires of) an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    pub client_id: String,
    /// Space-separated, as RFC 8693 and RFC 9068 write it.
    pub scope: String,
}

/// What a verified token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub client_id: String,
    /// The token's subject: the client, or a user for `/Me`.
    pub subject: String,
    pub scopes: BTreeSet<String>,
    /// Unix seconds.
    pub expires: u64,
}

impl Grant {
    pub fn allows(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

/// Issues and verifies scimd's own tokens.
pub struct Tokens {
    ring: Arc<KeyRing>,
    issuer: String,
    audience: String,
    lifetime: Duration,
    leeway: u64,
    /// Hashed with foldhash: a token is hashed on every request, and only
    /// verified tokens are keys.
    cache: RwLock<HashMap<String, Arc<Grant>, foldhash::fast::RandomState>>,
}

impl Tokens {
    pub fn new(
        ring: Arc<KeyRing>,
        issuer: String,
        audience: String,
        lifetime: Duration,
        leeway: Duration,
    ) -> Tokens {
        Tokens {
            ring,
            issuer,
            audience,
            lifetime,
            leeway: leeway.as_secs(),
            cache: RwLock::new(HashMap::default()),
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs a token for `client_id` with `scopes`.
    pub fn issue(&self, client_id: &str, scopes: &BTreeSet<String>) -> Result<String, AuthError> {
        let key = self
            .ring
            .active()
            .ok_or_else(|| AuthError::Keys("no signing key".into()))?;
        let now = unix_now();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: client_id.to_string(),
            exp: now + self.lifetime.as_secs(),
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            client_id: client_id.to_string(),
            scope: scopes
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        };
        key.sign_jws("at+jwt", &claims)
    }

    /// Checks signature, algorithm, issuer, audience and expiry.
    pub async fn verify(&self, token: &str) -> Result<Arc<Grant>, TokenError> {
        let now = unix_now();
        if let Some(grant) = self.cache.read().ok().and_then(|c| c.get(token).cloned()) {
            if grant.expires + self.leeway <= now {
                return Err(TokenError::Expired);
            }
            return Ok(grant);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Malformed(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Malformed("no kid".into()))?;
        let key = self
            .ring
            .decoding(&kid)
            .await
            .ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = self.leeway;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            _ => TokenError::Malformed(e.to_string()),
        })?;
        let grant = Arc::new(Grant {
            client_id: data.claims.client_id,
            subject: data.claims.sub,
            scopes: crate::scope::parse_scope_param(&data.claims.scope),
            expires: data.claims.exp,
        });
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= CACHE_LIMIT {
                cache.retain(|_, g| g.expires > now);
                if cache.len() >= CACHE_LIMIT {
                    cache.clear();
                }
            }
            cache.insert(token.to_string(), grant.clone());
        }
        Ok(grant)
    }
}
