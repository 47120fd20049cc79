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
//! An import that fails half-way leaves what it wrote, and a record that
//! says so ([`MARKER`], written first, deleted last): `serve` and `export`
//! refuse such a store, which must be emptied before the next attempt
//! (import only fills an empty store).

use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use scimd_core::changelog::{Change, Op, created_paths};
use scimd_core::query::{Paging, Query};
use scimd_core::schema::Registry;
use scimd_core::store::{
    ExportStore, Member, Record, RecordStore, ResourceWrite, RestoredResource, Snapshot, Store,
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
    if snapshot
        .records(MARKER.0)
        .await?
        .iter()
        .any(|r| r.id == MARKER.1)
    {
        bail!(
            "an import into this store has not finished (it may still be running): the store \
             holds part of one, not a store to copy"
        );
    }
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
    if resources != total {
        bail!("the snapshot counted {total} resources and {resources} were read");
    }
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
        .filter(|(rtype, _)| registry.by_name(rtype).is_none_or(|rt| rt.name() != rtype))
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
    put_marker(store).await?;
    let bar = bar(progress, header.resources, "importing");
    let mut importer = Importer::new(store, registry, &bar);
    let outcome = importer.read_all(lines, &header).await;
    bar.finish();
    match outcome {
        Ok(imported) => {
            remove_marker(store)
                .await
                .context("marking the import complete")?;
            Ok(imported)
        }
        // Nothing reached the store: it is as empty as it was.
        Err(e) if !importer.wrote => match remove_marker(store).await {
            Ok(()) => Err(e),
            Err(also) => Err(e.context(format!(
                "nothing was imported, but the mark of an import under way could not be removed \
                 ({also:#}): empty the store before importing again"
            ))),
        },
        Err(e) => Err(e.context(
            "the import stopped half-way and the store holds part of it, marked so: \
             scimd will not serve or export it. Empty the store (for SQLite, delete \
             scimd.sqlite3 in the data directory) before importing again",
        )),
    }
}

/// The record a running import keeps in its store (`setting`, by id): a
/// store that holds it is half imported (the import failed or was killed),
/// and neither `serve` nor `export` will take it.
const MARKER: (&str, &str) = ("setting", "import_incomplete");

fn marker_change() -> Change {
    Change::operational(Op::Import, MARKER.0, MARKER.1)
}

async fn remove_marker(store: &dyn Store) -> anyhow::Result<()> {
    store
        .record_delete(MARKER.0, MARKER.1, marker_change())
        .await?;
    Ok(())
}

async fn put_marker(store: &dyn Store) -> anyhow::Result<()> {
    let begun = scimd_core::value::now_timestamp();
    store
        .record_put(
            MARKER.0,
            Record {
                id: MARKER.1.to_string(),
                data: serde_json::json!({ "begun": begun }),
            },
            marker_change(),
        )
        .await
        .context("marking the import begun")?;
    Ok(())
}

/// An error if an import into `store` began and did not finish.
pub async fn refuse_half_imported(store: &dyn RecordStore) -> anyhow::Result<()> {
    if let Some(marker) = store.record_get(MARKER.0, MARKER.1).await? {
        bail!(
            "an import into this store began at {} and has not finished: it may still be \
             running, or it stopped and the store holds part of it. Once no import runs, \
             empty the store (for SQLite, delete scimd.sqlite3 in the data directory) and \
             import again",
            marker.data["begun"].as_str().unwrap_or("an unknown time")
        );
    }
    Ok(())
}

/// An import under way: what it read and what it wrote.
struct Importer<'a> {
    store: &'a dyn Store,
    registry: &'a Registry,
    member_types: Vec<String>,
    bar: &'a ProgressBar,
    /// Resources read and not yet written (written a page at a time).
    batch: Vec<RestoredResource>,
    /// Resources written.
    imported: u64,
    /// Lines read, which the end line counts.
    read: u64,
    ended: bool,
    /// Whether a write was sent to the store (the marker aside).
    wrote: bool,
}

impl<'a> Importer<'a> {
    fn new(store: &'a dyn Store, registry: &'a Registry, bar: &'a ProgressBar) -> Self {
        Importer {
            store,
            registry,
            member_types: registry.member_types(),
            bar,
            batch: Vec::new(),
            imported: 0,
            read: 0,
            ended: false,
            wrote: false,
        }
    }

    /// Reads every line after the header; returns the number of resources.
    async fn read_all(
        &mut self,
        lines: impl Iterator<Item = std::io::Result<String>>,
        header: &Header,
    ) -> anyhow::Result<u64> {
        for (i, line) in lines.enumerate() {
            let number = i + 2;
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            if self.ended {
                bail!("line {number}: data after the end line");
            }
            let parsed: Line =
                serde_json::from_str(&line).with_context(|| format!("line {number}: invalid"))?;
            self.line(number, parsed).await?;
        }
        self.flush().await?;
        if header.scimd_export >= 2 && !self.ended {
            bail!("the export has no end line: it was cut short (a partial file or a broken pipe)");
        }
        // Format 1 has no end line: its header's count (taken before the
        // resources were read, so exact only for a quiet store) is the check.
        if header.scimd_export == 1 && self.imported != header.resources {
            bail!(
                "the export announces {} resources, {} were read: it was cut short",
                header.resources,
                self.imported
            );
        }
        Ok(self.imported)
    }

    async fn line(&mut self, number: usize, line: Line) -> anyhow::Result<()> {
        if let Line::End(end) = line {
            if end.lines != self.read {
                bail!(
                    "line {number}: the export announces {} lines, {} were read",
                    end.lines,
                    self.read
                );
            }
            self.ended = true;
            return Ok(());
        }
        self.read += 1;
        match line {
            Line::Resource(r) => {
                let restored = self.resource(number, r)?;
                self.batch.push(restored);
                if self.batch.len() as u64 >= PAGE {
                    self.flush().await?;
                }
            }
            Line::Members(g) => {
                self.flush().await?;
                self.members(number, g).await?;
            }
            Line::Record(r) => {
                self.flush().await?;
                self.wrote = true;
                let change = Change::operational(Op::Import, &r.kind, &r.id);
                let record = Record {
                    id: r.id,
                    data: r.data,
                };
                self.store.record_put(&r.kind, record, change).await?;
            }
            Line::End(_) => {}
        }
        Ok(())
    }

    /// A resource line as the store restores it.
    fn resource(&self, number: usize, r: ResourceLine) -> anyhow::Result<RestoredResource> {
        let rt = self
            .registry
            .by_name(&r.resource_type)
            .with_context(|| format!("line {number}: unknown type {}", r.resource_type))?;
        // Stores compare timestamps as text in one canonical form.
        let created = canonical_time(&r.created)
            .with_context(|| format!("line {number}: created is not an RFC 3339 time"))?;
        let modified = canonical_time(&r.modified)
            .with_context(|| format!("line {number}: modified is not an RFC 3339 time"))?;
        let mut write = ResourceWrite {
            member_types: self.member_types.clone(),
            ..ResourceWrite::derived(rt, Op::Import, &r.id, r.data, &modified)
        };
        // Logged at the time of the import, not of the last change.
        write.change = Change::operational(Op::Import, rt.name(), &r.id)
            .with_paths(created_paths(&write.data));
        Ok(RestoredResource {
            write,
            version: r.version,
            created,
        })
    }

    async fn members(&mut self, number: usize, g: MembersLine) -> anyhow::Result<()> {
        let members = g
            .members
            .into_iter()
            .map(|m| Member {
                value: m.value,
                typ: m.typ,
                display: m.display,
            })
            .collect();
        self.wrote = true;
        self.store
            .restore_members(&g.resource_type, &g.id, members, self.member_types.clone())
            .await
            .with_context(|| format!("line {number}: members of {}", g.id))
    }

    /// Writes the resources read since the last page.
    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let n = self.batch.len() as u64;
        self.wrote = true;
        self.store
            .restore(std::mem::take(&mut self.batch))
            .await
            .context("restoring resources")?;
        self.imported += n;
        self.bar.inc(n);
        Ok(())
    }
}

/// `text` as the server writes timestamps (UTC, milliseconds).
fn canonical_time(text: &str) -> Option<String> {
    scimd_core::value::parse_datetime(text).map(scimd_core::value::format_timestamp)
}
