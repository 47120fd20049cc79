//! The audit trail for people (`scimd audit`: a table on a terminal, JSON
//! lines otherwise, `--follow`), and the change log's pruning while the
//! server runs.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use scimd_core::changelog::{AuditFilters, Entry, MAX_AUDIT_PAGE, Retention};
use scimd_core::store::Store;

use crate::{Config, open_existing_store};

/// How often a running server prunes the change log (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How often `--follow` asks for new entries.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// Prunes what `retention` no longer keeps, at start and every
/// [`PRUNE_EVERY`]; in slices, so writes go on meanwhile. Several servers on
/// one database may prune at once: deleting a deleted row is no harm.
pub fn prune_in_background(store: Arc<dyn Store>, retention: Retention) {
    if retention == Retention::default() {
        return;
    }
    tokio::spawn(async move {
        loop {
            let floor = match undelivered_floor(&*store).await {
                Ok(floor) => floor,
                Err(e) => {
                    tracing::warn!(error = %e, "change log pruning: event streams unreadable; tried again later");
                    tokio::time::sleep(PRUNE_EVERY).await;
                    continue;
                }
            };
            match store.prune_changes(retention, floor).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(entries = n, "change log pruned"),
                Err(e) => {
                    tracing::warn!(error = %e, "change log pruning failed; tried again later")
                }
            }
            tokio::time::sleep(PRUNE_EVERY).await;
        }
    });
}

/// The last position every event stream has passed: pruning keeps what a
/// stream has not delivered yet, whatever its age (a paused or dead stream
/// holds the log back until it is resumed or deleted).
async fn undelivered_floor(store: &dyn Store) -> Result<i64, scimd_core::store::StoreError> {
    let mut floor = i64::MAX;
    for stream in scimd_events::streams::list(store).await? {
        if let Some(progress) = store.stream_progress(&stream.id).await? {
            floor = floor.min(progress.through);
        }
    }
    Ok(floor)
}

/// How `scimd audit` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (when piped, or `--json`).
    JsonLines,
    /// Aligned columns for a person.
    Table,
}

impl Format {
    /// JSON lines unless standard output is a terminal.
    pub fn detect(json: bool) -> Format {
        if json || !std::io::stdout().is_terminal() {
            Format::JsonLines
        } else {
            Format::Table
        }
    }
}

/// `scimd audit`: the entries matching `filters`, oldest first, at most
/// `limit` (all when `None`); with `follow`, then every new one as it comes.
pub async fn run(
    config: &Config,
    filters: &AuditFilters,
    limit: Option<u64>,
    follow: bool,
    format: Format,
) -> anyhow::Result<()> {
    let (store, _) = open_existing_store(config).await?;
    filters.query(None, 1).map_err(anyhow::Error::msg)?;
    let mut out = std::io::stdout().lock();
    if format == Format::Table {
        writeln!(out, "{}", header())?;
    }
    let mut after = None;
    let mut left = limit.unwrap_or(u64::MAX);
    loop {
        let page = u32::try_from(left.min(u64::from(MAX_AUDIT_PAGE))).unwrap_or(MAX_AUDIT_PAGE);
        // Read before the query, whose later snapshot holds every entry up
        // to it: a follower that found no more matches goes on from there,
        // instead of scanning again, every poll, all the entries since its
        // last match (a rare `--actor` over a long log).
        let head = match follow {
            true => Some(store.change_head().await?),
            false => None,
        };
        let entries = if page == 0 {
            Vec::new()
        } else {
            store
                .changes(filters.query(after, page).map_err(anyhow::Error::msg)?)
                .await?
        };
        for entry in &entries {
            let line = match format {
                Format::JsonLines => serde_json::to_string(entry)?,
                Format::Table => row(entry),
            };
            if let Err(e) = writeln!(out, "{line}") {
                // A closed pipe (`scimd audit | head`) is the reader's choice.
                return match e.kind() {
                    std::io::ErrorKind::BrokenPipe => Ok(()),
                    _ => Err(e.into()),
                };
            }
        }
        out.flush()?;
        left -= entries.len() as u64;
        if let Some(last) = entries.last() {
            after = Some(last.position);
        }
        if entries.len() < page as usize
            && let Some(head) = head
        {
            after = Some(after.map_or(head, |a| a.max(head)));
        }
        if entries.len() < page as usize || left == 0 {
            if !follow || left == 0 {
                return Ok(());
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }
}

fn header() -> String {
    format!(
        "{:>8}  {:<24}  {:<14}  {:<12}  {:<36}  {:<9}  {:<20}  PATHS",
        "POSITION", "AT", "OP", "TYPE", "ID", "VERSION", "ACTOR"
    )
}

fn row(e: &Entry) -> String {
    let version = match (e.version_before, e.version_after) {
        (None, None) => "-".to_string(),
        (before, after) => format!(
            "{}→{}",
            before.map_or("∅".into(), |v| v.to_string()),
            after.map_or("∅".into(), |v| v.to_string())
        ),
    };
    let actor = e
        .actor
        .subject
        .as_ref()
        .or(e.actor.client_id.as_ref())
        .cloned()
        .unwrap_or_else(|| e.actor.via.clone());
    format!(
        "{:>8}  {:<24}  {:<14}  {:<12}  {:<36}  {:<9}  {:<20}  {}",
        e.position,
        e.at,
        e.op,
        e.resource_type,
        e.resource_id,
        version,
        actor,
        e.paths.join(",")
    )
}
