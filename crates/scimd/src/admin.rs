//! Operator commands that work on a store directly, beside or without a
//! running server: OAuth clients, tokens for scripts, the protection mode.

use std::collections::BTreeSet;
use std::sync::Arc;

use scimd_auth::{Auth, Mode};
use serde_json::{Value, json};

use crate::{Config, auth_config, open_existing_store, scope_endpoints};

async fn open_auth(config: &Config) -> anyhow::Result<(Auth, Arc<dyn scimd_core::store::Store>)> {
    let (store, _) = open_existing_store(config).await?;
    let registry = crate::load_registry(config)?;
    let base = config.public_base(config.listen);
    let auth = Auth::open(
        store.clone(),
        auth_config(config, &base)?,
        &scope_endpoints(&registry),
    );
    Ok((auth, store))
}

/// The scopes of the event streams on the store (`<prefix>events.<id>`),
/// which a client may be given besides the known ones.
async fn stream_scopes(
    auth: &Auth,
    store: &dyn scimd_core::store::Store,
) -> anyhow::Result<BTreeSet<String>> {
    Ok(scimd_events::streams::list(store)
        .await?
        .iter()
        .map(|s| scimd_events::streams::scope(auth.scopes().prefix(), &s.id))
        .collect())
}

fn scope_set(
    scopes: &[String],
    auth: &Auth,
    streams: &BTreeSet<String>,
) -> anyhow::Result<BTreeSet<String>> {
    // By default every SCIM scope; operational ones (`metrics.read`) only
    // when named.
    if scopes.is_empty() {
        return Ok(auth.scim_scopes().clone());
    }
    let set: BTreeSet<String> = scopes
        .iter()
        .flat_map(|s| s.split([' ', ',']))
        .filter(|s| !s.is_empty())
        .map(|s| {
            // Short names (`users.read`) get the configured prefix.
            if s.contains(':') {
                s.to_string()
            } else {
                format!("{}{s}", auth.scopes().prefix())
            }
        })
        .collect();
    // A scope no route needs would grant nothing: a typo, refused here
    // rather than found when the client is refused.
    if let Some(unknown) = set
        .iter()
        .find(|s| !auth.known_scopes().contains(*s) && !streams.contains(*s))
    {
        anyhow::bail!(
            "unknown scope '{unknown}'; the scopes are: {} (and events.<stream id> for each event stream)",
            auth.known_scopes()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(set)
}

/// `scimd client create NAME --scopes ...`
pub async fn client_create(
    config: &Config,
    name: &str,
    client_id: Option<&str>,
    scopes: &[String],
    rate: Option<f64>,
) -> anyhow::Result<Value> {
    if name.trim().is_empty() {
        anyhow::bail!("a client needs a name");
    }
    // HTTP Basic splits its credentials at the first colon.
    if let Some(id) = client_id
        && (id.trim().is_empty() || id.contains(':') || id.chars().any(char::is_control))
    {
        anyhow::bail!("a client id must be non-empty, without ':' or control characters");
    }
    let (auth, store) = open_auth(config).await?;
    let scopes = scope_set(scopes, &auth, &stream_scopes(&auth, &*store).await?)?;
    let credentials = auth.clients().create(name, client_id, scopes).await?;
    let mut out = serde_json::to_value(&credentials)?;
    if let Some(rate) = rate.filter(|r| *r != 0.0) {
        auth.clients()
            .set_rate(&credentials.client_id, Some(rate))
            .await?;
        out["rate"] = json!(rate);
    }
    Ok(out)
}

/// `scimd client update ID --rate N` (0: no limit).
pub async fn client_update(
    config: &Config,
    client_id: &str,
    rate: Option<f64>,
) -> anyhow::Result<Value> {
    let (auth, _) = open_auth(config).await?;
    let Some(rate) = rate else {
        anyhow::bail!("nothing to update: give --rate");
    };
    let rate = (rate != 0.0).then_some(rate);
    Ok(serde_json::to_value(
        auth.clients().set_rate(client_id, rate).await?,
    )?)
}

/// `scimd client list`
pub async fn client_list(config: &Config) -> anyhow::Result<Value> {
    let (auth, _) = open_auth(config).await?;
    Ok(serde_json::to_value(auth.clients().list().await?)?)
}

/// `scimd client rotate-secret ID`
pub async fn client_rotate(config: &Config, client_id: &str) -> anyhow::Result<Value> {
    let (auth, _) = open_auth(config).await?;
    Ok(serde_json::to_value(
        auth.clients().rotate_secret(client_id).await?,
    )?)
}

/// `scimd client delete ID`
pub async fn client_delete(config: &Config, client_id: &str) -> anyhow::Result<Value> {
    let (auth, _) = open_auth(config).await?;
    if !auth.clients().delete(client_id).await? {
        anyhow::bail!("no client '{client_id}'");
    }
    Ok(json!({ "deleted": client_id }))
}

/// `scimd token --client ID --scopes ...`: a token for scripts, issued with
/// the store's keys (whoever can open the store is trusted).
pub async fn token(config: &Config, client_id: &str, scopes: &[String]) -> anyhow::Result<Value> {
    let (auth, store) = open_auth(config).await?;
    let client = auth
        .clients()
        .get(client_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no client '{client_id}'"))?;
    let requested = if scopes.is_empty() {
        client.scopes.clone()
    } else {
        scope_set(scopes, &auth, &stream_scopes(&auth, &*store).await?)?
    };
    let granted: BTreeSet<String> = requested.intersection(&client.scopes).cloned().collect();
    if granted.is_empty() {
        anyhow::bail!("none of the requested scopes is allowed for client '{client_id}'");
    }
    auth.ensure_keys().await?;
    Ok(serde_json::to_value(auth.issue(client_id, &granted)?)?)
}

/// `scimd protection set MODE`
pub async fn protection_set(config: &Config, mode: &str) -> anyhow::Result<Value> {
    let mode = Mode::parse(mode).ok_or_else(|| anyhow::anyhow!("mode is oauth or bypass"))?;
    let (_, store) = open_auth(config).await?;
    scimd_auth::protection::write(store.as_ref(), mode).await?;
    if mode == Mode::Bypass {
        eprintln!(
            "WARNING: protection mode set to BYPASS: every scimd on this store accepts SCIM \
             requests WITHOUT a token within seconds. Protect the endpoints at the network level."
        );
    }
    Ok(json!({ "protection": mode.as_str() }))
}

/// `scimd protection show`
pub async fn protection_show(config: &Config) -> anyhow::Result<Value> {
    let (_, store) = open_auth(config).await?;
    let mode = scimd_auth::protection::read(store.as_ref()).await?;
    Ok(json!({ "protection": mode.as_str() }))
}

/// `scimd openapi`: the document `/openapi.json` serves.
pub fn openapi(config: &Config) -> anyhow::Result<Value> {
    let registry = crate::load_registry(config)?;
    let base = config.public_base(config.listen);
    let base = base.as_str();
    let auth = auth_config(config, base)?;
    Ok(scimd_http::openapi::document(
        &scimd_http::declared_routes(),
        &registry,
        &scimd_auth::Scopes::new(auth.scope_prefix),
        auth.public_discovery,
        base,
    ))
}
