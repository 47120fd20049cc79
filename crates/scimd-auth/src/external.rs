//! Tokens of an external authorization server (Janssen, Keycloak, Entra...):
//! verified against its JWK Set (cached; fetched again when a token names
//! an unknown key) or by RFC 7662 introspection (active answers cached
//! until they expire).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::error::TokenError;
use crate::token::Grant;
use crate::unix_now;

/// How an external issuer's tokens are checked.
#[derive(Debug, Clone, PartialEq)]
pub enum ExternalCheck {
    Jwks {
        url: String,
    },
    Introspection {
        url: String,
        client_id: String,
        client_secret: String,
    },
}

/// A trusted external authorization server.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalIssuer {
    pub issuer: String,
    /// Required `aud` of its tokens (none: not checked).
    pub audience: Option<String>,
    pub check: ExternalCheck,
}

pub struct External {
    config: ExternalIssuer,
    http: reqwest::Client,
    jwks: RwLock<Option<JwkSet>>,
    last_fetch: std::sync::Mutex<Option<Instant>>,
    /// Introspection answers by token: a grant kept until its `exp`, at
    /// most [`KEEP_ACTIVE`] (so that a token revoked at the issuer stops
    /// working soon), or a refusal kept [`KEEP_REFUSED`] (so that a stream
    /// of the same wrong token does not become a stream of calls to the
    /// issuer).
    introspected: RwLock<HashMap<String, Introspected>>,
    /// Introspection calls in flight at most; more wait their turn.
    calls: tokio::sync::Semaphore,
}

#[derive(Clone)]
enum Introspected {
    Active { grant: Arc<Grant>, until: u64 },
    Refused { error: TokenError, until: u64 },
}

/// How long an active introspection answer is used, at most, in seconds.
const KEEP_ACTIVE: u64 = 60;
/// How long a refusal (inactive, another issuer or audience) is used.
const KEEP_REFUSED: u64 = 30;
/// Kept answers beyond which the expired ones are dropped.
const KEPT_ANSWERS: usize = 100_000;
/// Introspection calls in flight at once.
const CALLS_AT_ONCE: usize = 32;

/// Claims read from an external token or an introspection answer; names
/// vary between servers, so several spellings are accepted.
#[derive(Debug, Deserialize)]
struct ExternalClaims {
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    scope: Option<String>,
    /// A list (Okta), or one space-separated string (Entra ID).
    #[serde(default)]
    scp: Option<ScopeClaim>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Value>,
}

/// The `scp` claim in either of the shapes servers send.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    Spaced(String),
    Listed(Vec<String>),
}

impl ExternalClaims {
    fn grant(self) -> Grant {
        let mut scopes = self
            .scope
            .as_deref()
            .map(crate::scope::parse_scope_param)
            .unwrap_or_default();
        match self.scp {
            Some(ScopeClaim::Spaced(s)) => scopes.extend(crate::scope::parse_scope_param(&s)),
            Some(ScopeClaim::Listed(list)) => scopes.extend(list),
            None => {}
        }
        let client_id = self.client_id.or(self.azp).unwrap_or_default();
        Grant {
            subject: self.sub.unwrap_or_else(|| client_id.clone()),
            client_id,
            scopes,
            expires: self.exp.unwrap_or(0),
        }
    }
}

impl External {
    pub fn new(config: ExternalIssuer) -> External {
        // reqwest's rustls needs a process-wide provider; ring is the one
        // scimd uses everywhere. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if config.audience.is_none() {
            tracing::warn!(
                issuer = %config.issuer,
                "tokens of the external issuer are accepted whatever their audience: set \
                 [auth.external] audience so that its tokens for other services are refused"
            );
        }
        External {
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            jwks: RwLock::new(None),
            last_fetch: std::sync::Mutex::new(None),
            introspected: RwLock::new(HashMap::new()),
            calls: tokio::sync::Semaphore::new(CALLS_AT_ONCE),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Introspection answers for any token not ours; JWKS only for tokens
    /// naming this issuer.
    pub fn introspects(&self) -> bool {
        matches!(self.config.check, ExternalCheck::Introspection { .. })
    }

    pub async fn verify(&self, token: &str) -> Result<Arc<Grant>, TokenError> {
        match &self.config.check {
            ExternalCheck::Jwks { url } => self.verify_jwt(token, url).await.map(Arc::new),
            ExternalCheck::Introspection {
                url,
                client_id,
                client_secret,
            } => self.introspect(token, url, client_id, client_secret).await,
        }
    }

    async fn verify_jwt(&self, token: &str, url: &str) -> Result<Grant, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        // Asymmetric algorithms only: with HS* the public JWKS would be the
        // shared secret.
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(TokenError::Malformed(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header.kid.unwrap_or_default();
        let key = match self.key(&kid) {
            Some(k) => k,
            None => {
                self.fetch_jwks(url).await?;
                self.key(&kid).ok_or(TokenError::UnknownKey)?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        // A token not valid yet is refused too (with the same leeway).
        validation.validate_nbf = true;
        match &self.config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data =
            jsonwebtoken::decode::<ExternalClaims>(token, &key, &validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                    ErrorKind::InvalidAudience => TokenError::WrongAudience,
                    _ => TokenError::Malformed(e.to_string()),
                }
            })?;
        Ok(data.claims.grant())
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        let set = self.jwks.read().ok()?;
        let set = set.as_ref()?;
        let jwk = if kid.is_empty() {
            set.keys.first()
        } else {
            set.find(kid)
        }?;
        DecodingKey::from_jwk(jwk).ok()
    }

    /// Fetches the JWK Set, at most once a second whatever tokens arrive.
    async fn fetch_jwks(&self, url: &str) -> Result<(), TokenError> {
        {
            let Ok(mut last) = self.last_fetch.lock() else {
                return Err(TokenError::UnknownKey);
            };
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let set: JwkSet = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| {
                tracing::warn!(%url, error = %e, "cannot fetch the external JWK Set");
                TokenError::UnknownKey
            })?
            .json()
            .await
            .map_err(|e| {
                tracing::warn!(%url, error = %e, "the external JWK Set does not parse");
                TokenError::UnknownKey
            })?;
        if let Ok(mut jwks) = self.jwks.write() {
            *jwks = Some(set);
        }
        Ok(())
    }

    async fn introspect(
        &self,
        token: &str,
        url: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Result<Arc<Grant>, TokenError> {
        let now = unix_now();
        let kept = self
            .introspected
            .read()
            .ok()
            .and_then(|c| c.get(token).cloned());
        match kept {
            Some(Introspected::Active { grant, until }) if until > now => {
                return if grant.expires <= now {
                    Err(TokenError::Expired)
                } else {
                    Ok(grant)
                };
            }
            Some(Introspected::Refused { error, until }) if until > now => return Err(error),
            _ => {}
        }
        let answer = {
            let _turn = self
                .calls
                .acquire()
                .await
                .map_err(|_| TokenError::Inactive)?;
            self.ask(token, url, client_id, client_secret).await?
        };
        let outcome = answer.and_then(|claims| self.accepted(claims, now));
        let kept = match &outcome {
            Ok(grant) => Introspected::Active {
                grant: grant.clone(),
                until: grant.expires.min(now + KEEP_ACTIVE),
            },
            Err(error) => Introspected::Refused {
                error: error.clone(),
                until: now + KEEP_REFUSED,
            },
        };
        if let Ok(mut cache) = self.introspected.write() {
            if cache.len() > KEPT_ANSWERS {
                cache.retain(|_, k| match k {
                    Introspected::Active { until, .. } | Introspected::Refused { until, .. } => {
                        *until > now
                    }
                });
            }
            cache.insert(token.to_string(), kept);
        }
        outcome
    }

    /// The issuer's answer about `token`: `Err` when there is none (the
    /// issuer out of reach: not kept), `Ok(Err)` when it is inactive.
    async fn ask(
        &self,
        token: &str,
        url: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Result<Result<ExternalClaims, TokenError>, TokenError> {
        let claims: ExternalClaims = self
            .http
            .post(url)
            .basic_auth(client_id, Some(client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| {
                tracing::warn!(%url, error = %e, "token introspection failed");
                TokenError::Inactive
            })?
            .json()
            .await
            .map_err(|_| TokenError::Inactive)?;
        if claims.active != Some(true) {
            return Ok(Err(TokenError::Inactive));
        }
        Ok(Ok(claims))
    }

    /// The grant of an active introspection answer, if this server takes
    /// it (its issuer and audience).
    fn accepted(&self, claims: ExternalClaims, now: u64) -> Result<Arc<Grant>, TokenError> {
        if let Some(iss) = &claims.iss
            && iss != &self.config.issuer
        {
            return Err(TokenError::WrongIssuer);
        }
        if let Some(want) = &self.config.audience {
            let ok = match &claims.aud {
                Some(Value::String(a)) => a == want,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(want)),
                _ => false,
            };
            if !ok {
                return Err(TokenError::WrongAudience);
            }
        }
        let grant = Arc::new(claims.grant());
        if grant.expires <= now {
            return Err(TokenError::Expired);
        }
        Ok(grant)
    }
}

/// The `iss` of a JWT, read without verifying it (to route the token to
/// the right verifier); `None` for opaque tokens.
pub fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_string)
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::ExternalClaims;

    fn scopes(claims: serde_json::Value) -> Vec<String> {
        let claims: ExternalClaims =
            serde_json::from_value(claims).unwrap_or_else(|e| panic!("{e}"));
        claims.grant().scopes.into_iter().collect()
    }

    #[test]
    fn scp_is_read_as_a_list_or_a_spaced_string() {
        let okta = serde_json::json!({"scp": ["a.read", "b.write"], "client_id": "c"});
        let entra = serde_json::json!({"scp": "a.read b.write", "azp": "c"});
        assert_eq!(scopes(okta), ["a.read", "b.write"]);
        assert_eq!(scopes(entra), ["a.read", "b.write"]);
    }
}
