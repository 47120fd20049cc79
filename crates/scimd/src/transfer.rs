//! `scimd export` and `scimd import`: every resource (version and timestamps
//! included), every membership and the operational records, as NDJSON,
//! streamed between any two stores. Memory stays flat: resources are read a
//! page at a time and written a batch at a time.
//!
//! The stream, one JSON object per line:
//! 1. `{"scimd_export": 2, "resources": N}` (N sizes the progress bar);
//! 2. `{"resource": {"resourceType", "id", "version", "created", "modified", "data"}}`
//!    for every resource, in insertion order (which the import keeps);
//! 3. `{"members": {"resourceType", "id", "members": [{"value", "type", "display"}]}}`
//!    for every group with members, after all resources, so that each member
//!    exists when its group's line is read;
//! 4. `{"record": {"kind", "id", "data"}}` for each operational record;
//! 5. `{"end": {"lines": K}}`, K the number of lines 2 to 4: an import
//!    refuses a stream without it (a cut file, a broken pipe). Format 1
//!    exports, written before this line existed, are read without it but
//!    must hold the resources their header announces.
//!
//! The export reads one snapshot of the store ([`ExportStore`]): a server
//! may go on writing while it runs, and the file is the store at the moment
//! the export began.
//!
//! An import that fails half-way leaves what it wrote; it says so, and the
//! store must be emptied before the next attempt (import only fills an
//! empty store).

use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use scimd_core::changelog::{Change, Op, created_paths};
use scimd_core::query::{Paging, Query};
use scimd_core::schema::Registry;
use scimd_core::store::{
    ExportStore, Member, Record, ResourceWrite, RestoredResource, Snapshot, Store,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Operational record kinds that travel with the resources.
pub const RECORD_KINDS: &[&str] = &["client", "signing_key", "setting"];
const FORMAT: u32 = 2;
/// Resources read per page, and restored per transaction.
const PAGE: u64 = 500;
/// Groups read per page when exporting memberships (each may carry many).
const GROUP_PAGE: u64 = 20;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceLine {
    resource_type: String,
    id: String,
    version: i64,
    created: String,
    modified: String,
    data: Map<String, Value>,
}

#[derive(Serialize, Deserialize)]
struct MemberLine {
    value: String,
    #[serde(rename = "type")]
    typ: Option<String>,
    display: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MembersLine {
    resource_type: String,
    id: String,
    members: Vec<MemberLine>,
}

#[derive(Serialize, Deserialize)]
struct RecordLine {
    kind: String,
    id: String,
    data: Value,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Resource(ResourceLine),
    Members(MembersLine),
    Record(RecordLine),
    End(EndLine),
}

#[derive(Serialize, Deserialize)]
struct EndLine {
    lines: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    scimd_export: u32,
    resources: u64,
}

fn bar(show: bool, total: u64, verb: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{verb} {{bar:40}} {{pos}}/{{len}} resources ({{per_sec}}, {{eta}} left)"
    )) {
        bar.set_style(style);
    }
    bar
}

fn all_types(registry: &Registry) -> Vec<String> {
    registry
        .resource_types()
        .iter()
        .map(|rt| rt.name().to_string())
        .collect()
}

async fn count(store: &dyn Store, types: Vec<String>) -> anyhow::Result<u64> {
    let page = store
        .query(Query {
            resource_types: types,
            filter: None,
            sort: None,
            paging: Paging::Index { start: 1, count: 0 },
            with_members: false,
        })
        .await?;
    Ok(page.total)
}

fn write_line(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes the whole store to `out`, as it was when the export began (one
/// snapshot: writes made meanwhile are not in it, and every member is
/// among the resources); returns the number of resources.
pub async fn export(
    store: &dyn ExportStore,
    registry: &Registry,
    out: &mut impl Write,
    progress: bool,
) -> anyhow::Result<u64> {
    let mut snapshot = store.snapshot().await?;
    let total = exported_total(&mut *snapshot, registry).await?;
    write_line(
        out,
        &Header {
            scimd_export: FORMAT,
            resources: total,
        },
    )?;
    let bar = bar(progress, total, "exporting");
    let resources = export_resources(&mut *snapshot, registry, out, &bar).await?;
    let mut lines = resources;
    lines += export_members(&mut *snapshot, registry, out).await?;
    for kind in RECORD_KINDS {
        for record in snapshot.records(kind).await? {
            write_line(
                out,
                &Line::Record(RecordLine {
                    kind: kind.to_string(),
                    id: record.id,
                    data: record.data,
                }),
            )?;
            lines += 1;
        }
    }
    write_line(out, &Line::End(EndLine { lines }))?;
    out.flush()?;
    bar.finish();
    Ok(resources)
}

/// The number of resources to export; an error if the store holds types
/// `registry` does not define (a configuration without the schemas
/// directory that defined them), which the export would leave out.
async fn exported_total(snapshot: &mut dyn Snapshot, registry: &Registry) -> anyhow::Result<u64> {
    let counts = snapshot.type_counts().await?;
    let unknown: Vec<String> = counts
        .iter()
        .filter(|(rtype, _)| registry.by_name(rtype).is_none())
        .map(|(rtype, n)| format!("{n} of type {rtype}"))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "the store holds resources of types this configuration does not define ({}): \
             export with the configuration (schemas directory) the server runs with",
            unknown.join(", ")
        );
    }
    Ok(counts.iter().map(|(_, n)| n).sum())
}

/// The resource lines, in insertion order; returns how many were written.
async fn export_resources(
    snapshot: &mut dyn Snapshot,
    registry: &Registry,
    out: &mut impl Write,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    let types = all_types(registry);
    let mut written = 0;
    let mut after = None;
    loop {
        let page = snapshot
            .page(&Query {
                resource_types: types.clone(),
                filter: None,
                sort: None,
                paging: Paging::Cursor { after, count: PAGE },
                with_members: false,
            })
            .await?;
        let Some(last) = page.last() else {
            return Ok(written);
        };
        after = Some(last.position);
        for r in page {
            write_line(
                out,
                &Line::Resource(ResourceLine {
                    resource_type: r.resource_type,
                    id: r.id,
                    version: r.version,
                    created: r.created,
                    modified: r.modified,
                    data: r.data,
                }),
            )?;
            written += 1;
            bar.inc(1);
        }
    }
}

/// A line per group with members; returns how many were written.
async fn export_members(
    snapshot: &mut dyn Snapshot,
    registry: &Registry,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let group_types: Vec<String> = registry
        .resource_types()
        .iter()
        .filter(|rt| rt.has_members())
        .map(|rt| rt.name().to_string())
        .collect();
    let mut written = 0;
    let mut after = None;
    while !group_types.is_empty() {
        let page = snapshot
            .page(&Query {
                resource_types: group_types.clone(),
                filter: None,
                sort: None,
                paging: Paging::Cursor {
                    after,
                    count: GROUP_PAGE,
                },
                with_members: true,
            })
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.position);
        for g in page {
            let members = g.members.unwrap_or_default();
            if members.is_empty() {
                continue;
            }
            write_line(
                out,
                &Line::Members(MembersLine {
                    resource_type: g.resource_type,
                    id: g.id,
                    members: members
                        .into_iter()
                        .map(|m| MemberLine {
                            value: m.value,
                            typ: m.typ,
                            display: m.display,
                        })
                        .collect(),
                }),
            )?;
            written += 1;
        }
    }
    Ok(written)
}

/// Reads an export into `store`, which must hold no resources; returns the
/// number of resources.
pub async fn import(
    store: &dyn Store,
    registry: &Registry,
    input: impl BufRead,
    progress: bool,
) -> anyhow::Result<u64> {
    if count(store, all_types(registry)).await? > 0 {
        bail!("the target store already holds resources: import needs an empty one");
    }
    let mut lines = input.lines();
    let header: Header = match lines.next() {
        Some(line) => serde_json::from_str(&line?).context("line 1: not a scimd export header")?,
        None => bail!("empty input: not a scimd export"),
    };
    if header.scimd_export != FORMAT && header.scimd_export != 1 {
        bail!(
            "export format {} is not supported (this scimd reads format {FORMAT})",
            header.scimd_export
        );
    }
    let bar = bar(progress, header.resources, "importing");
    let outcome = import_lines(store, registry, lines, &header, &bar).await;
    bar.finish();
    match outcome {
        Ok(imported) => Ok(imported),
        Err(e) if count(store, all_types(registry)).await.unwrap_or(1) > 0 => Err(e.context(
            "the import stopped half-way and the store holds part of it: \
             empty the store (for SQLite, delete scimd.sqlite3 in the data directory) \
             before importing again",
        )),
        Err(e) => Err(e),
    }
}

async fn import_lines(
    store: &dyn Store,
    registry: &Registry,
    lines: impl Iterator<Item = std::io::Result<String>>,
    header: &Header,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    let member_types = registry.member_types();
    let mut batch = Vec::new();
    let mut imported = 0;
    let mut read = 0u64;
    let mut ended = false;
    for (i, line) in lines.enumerate() {
        let number = i + 2;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        if ended {
            bail!("line {number}: data after the end line");
        }
        let parsed: Line =
            serde_json::from_str(&line).with_context(|| format!("line {number}: invalid"))?;
        if !matches!(parsed, Line::End(_)) {
            read += 1;
        }
        match parsed {
            Line::End(end) => {
                if end.lines != read {
                    bail!(
                        "line {number}: the export announces {} lines, {read} were read",
                        end.lines
                    );
                }
                ended = true;
            }
            Line::Resource(r) => {
                let rt = registry
                    .by_name(&r.resource_type)
                    .with_context(|| format!("line {number}: unknown type {}", r.resource_type))?;
                // Stores compare timestamps as text in one canonical form.
                let created = canonical_time(&r.created)
                    .with_context(|| format!("line {number}: created is not an RFC 3339 time"))?;
                let modified = canonical_time(&r.modified)
                    .with_context(|| format!("line {number}: modified is not an RFC 3339 time"))?;
                let mut write = ResourceWrite {
                    member_types: member_types.clone(),
                    ..ResourceWrite::derived(rt, Op::Import, &r.id, r.data, &modified)
                };
                // Logged at the time of the import, not of the last change.
                write.change = Change::operational(Op::Import, rt.name(), &r.id)
                    .with_paths(created_paths(&write.data));
                batch.push(RestoredResource {
                    write,
                    version: r.version,
                    created,
                });
                if batch.len() as u64 >= PAGE {
                    imported += flush(store, &mut batch, bar).await?;
                }
            }
            Line::Members(g) => {
                imported += flush(store, &mut batch, bar).await?;
                let members = g
                    .members
                    .into_iter()
                    .map(|m| Member {
                        value: m.value,
                        typ: m.typ,
                        display: m.display,
                    })
                    .collect();
                store
                    .restore_members(&g.resource_type, &g.id, members, member_types.clone())
                    .await
                    .with_context(|| format!("line {number}: members of {}", g.id))?;
            }
            Line::Record(r) => {
                imported += flush(store, &mut batch, bar).await?;
                store
                    .record_put(
                        &r.kind,
                        Record {
                            id: r.id.clone(),
                            data: r.data,
                        },
                        Change::operational(Op::Import, &r.kind, &r.id),
                    )
                    .await?;
            }
        }
    }
    imported += flush(store, &mut batch, bar).await?;
    if header.scimd_export >= 2 && !ended {
        bail!("the export has no end line: it was cut short (a partial file or a broken pipe)");
    }
    // Format 1 has no end line: its header's count (taken before the
    // resources were read, so exact only for a quiet store) is the check.
    if header.scimd_export == 1 && imported != header.resources {
        bail!(
            "the export announces {} resources, {imported} were read: it was cut short",
            header.resources
        );
    }
    Ok(imported)
}

async fn flush(
    store: &dyn Store,
    batch: &mut Vec<RestoredResource>,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    if batch.is_empty() {
        return Ok(0);
    }
    let n = batch.len() as u64;
    store
        .restore(std::mem::take(batch))
        .await
        .context("restoring resources")?;
    bar.inc(n);
    Ok(n)
}

/// `text` as the server writes timestamps (UTC, milliseconds).
fn canonical_time(text: &str) -> Option<String> {
    scimd_core::value::parse_datetime(text).map(scimd_core::value::format_timestamp)
}
