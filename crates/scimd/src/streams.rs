//! `scimd stream ...`: SCIM event streams (RFC 9967) as operators manage
//! them, on the store directly (a running server picks them up within a
//! second). Each command prints the stream as JSON.

use scimd_events::streams::{self, NewStream};
use serde_json::{Value, json};

use crate::{Config, open_existing_store};

/// The public base URL the server announces, for the poll endpoint's URL.
fn base(config: &Config) -> String {
    config.public_base(config.listen)
}

async fn describe(
    config: &Config,
    store: &dyn scimd_core::store::Store,
    spec: &scimd_core::events::StreamSpec,
) -> anyhow::Result<Value> {
    let progress = store.stream_progress(&spec.id).await?;
    let head = store.change_head().await?;
    Ok(streams::describe(
        spec,
        progress.as_ref(),
        head,
        &base(config),
        &config.auth.scope_prefix,
    ))
}

/// `scimd stream create NAME --poll | --push URL [...]`
pub async fn create(config: &Config, new: NewStream) -> anyhow::Result<Value> {
    if !config.change_log {
        anyhow::bail!(
            "event streams are made from the change log, which is off (change_log = false)"
        );
    }
    let (store, _) = open_existing_store(config).await?;
    let registry = crate::load_registry(config)?;
    let types: Vec<String> = registry
        .resource_types()
        .iter()
        .map(|rt| rt.name().to_string())
        .collect();
    let spec = streams::create(&*store, &types, new).await?;
    describe(config, &*store, &spec).await
}

/// `scimd stream list`
pub async fn list(config: &Config) -> anyhow::Result<Value> {
    let (store, _) = open_existing_store(config).await?;
    let mut out = Vec::new();
    for spec in streams::list(&*store).await? {
        out.push(describe(config, &*store, &spec).await?);
    }
    Ok(Value::Array(out))
}

/// `scimd stream show ID|NAME`
pub async fn show(config: &Config, id: &str) -> anyhow::Result<Value> {
    let (store, _) = open_existing_store(config).await?;
    let spec = streams::load(&*store, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no event stream '{id}'"))?;
    describe(config, &*store, &spec).await
}

/// `scimd stream delete ID|NAME`
pub async fn delete(config: &Config, id: &str) -> anyhow::Result<Value> {
    let (store, _) = open_existing_store(config).await?;
    if !streams::delete(&*store, id).await? {
        anyhow::bail!("no event stream '{id}'");
    }
    Ok(json!({ "deleted": id }))
}

/// `scimd stream pause|resume ID|NAME`
pub async fn pause(config: &Config, id: &str, paused: bool) -> anyhow::Result<Value> {
    let (store, _) = open_existing_store(config).await?;
    let spec = streams::set_paused(&*store, id, paused).await?;
    describe(config, &*store, &spec).await
}
