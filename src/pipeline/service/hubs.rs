//! Landing a partner's month in the FinOps hubs ingestion container, as the hubs guide asks
//! of other data sources: the folder's previous files are deleted, the new FOCUS files are
//! uploaded, each named `{ingestionId}__{file}.parquet`, and `manifest.json` goes last, which
//! queues the ingestion. What the folder holds is decided in `pipeline::hubs`.
//!
//! Crash safety: the month's composition is recorded in the ledger before anything is
//! written, and a landing counts as done only once its manifest is written. A landing cut
//! short (between the delete and the manifest) leaves the ledger saying the composition has
//! not landed; the follow-up's retry (the same run, so the lease's holder) deletes the folder
//! again and writes it whole. Two landings of the same month never interleave: a lease in the
//! ledger document admits one lander, which lands again until what it wrote is what the ledger
//! holds, so a run registered meanwhile is landed by the lease holder rather than lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::super::derived::{self, total_by_product, PARQUET_CONTENT_TYPE};
use super::super::hubs::{self, Component, HubsMonth, LineKey, Offer, Role};
use super::super::layout;
use super::super::run::RunRecord;
use super::{Pipeline, PipelineError};
use crate::pipeline::ports::storage::{Destination, ObjectPath};

/// The hubs dataset our FOCUS files belong to (hubs' FOCUS cost table).
pub const HUBS_DATASET: &str = "Costs";
pub const HUBS_MANIFEST: &str = "manifest.json";
/// How long a lander holds a month before another may take it over.
const LEASE: time::Duration = time::Duration::minutes(10);
/// Landings of one month by one holder before it gives the month back and fails (the
/// follow-up's retry continues).
const MAX_ROUNDS: usize = 4;

/// A temporary file removed however the landing ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("pbe-hubs-{}.tmp", uuid::Uuid::new_v4().simple())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A run's partner tenant (the folder's scope).
fn tenant(run: &RunRecord) -> &str {
    run.manifest
        .as_ref()
        .map(|m| m.partner_tenant_id.as_str())
        .filter(|t| !t.is_empty())
        .unwrap_or("partner")
}

/// The scope folder of a partner's month: `Costs/{yyyy}/{mm}/csp/{tenant}`.
pub fn month_folder(tenant: &str, month: &str) -> Result<ObjectPath, PipelineError> {
    Ok(ObjectPath::new(format!(
        "{HUBS_DATASET}/{}/{}/csp/{tenant}",
        &month[..4],
        &month[4..]
    ))?)
}

impl Pipeline {
    /// Registers what a completed run adds to its month in hubs and lands the month when its
    /// composition changed (or never fully landed). `Ok` without landing when another
    /// instance holds the month: that lander lands the new composition too.
    pub(super) async fn offer_to_hubs(
        &self,
        run: &RunRecord,
        offer: Offer<'_>,
    ) -> Result<Option<ObjectPath>, PipelineError> {
        if self.hubs.is_none() || run.no_data {
            return Ok(None);
        }
        let Some(month) = layout::run_billing_month(run).filter(|m| m.len() == 6) else {
            return Ok(None);
        };
        let tenant = tenant(run).to_string();
        // The run is the holder: a retry of this run's follow-up (after a crash) takes its
        // own lease back at once rather than waiting it out.
        let holder = run.run_id.to_string();
        let now = self.clock.now();
        let (doc, took) = self
            .ledger
            .update_hubs_month(&tenant, &month, |d| {
                let changed = d.register(offer);
                if d.landed.is_some() && d.landed == d.ingestion_id() {
                    return (changed, false);
                }
                let took = d.take_lease(&holder, now, LEASE);
                if took {
                    // The folder is about to be rewritten: until this landing records its
                    // manifest, nothing in it counts as landed (a crash or a lost lease leaves
                    // the month for the next lander, never marked done).
                    d.landed = None;
                }
                (changed || took, took)
            })
            .await?;
        if !took {
            if doc.landed.is_some() && doc.landed == doc.ingestion_id() {
                return Ok(None);
            }
            // Another lander holds the month and should land this run too, but it may fail or
            // give up: this run's follow-up stays pending and checks again, so the month
            // never depends on one lander alone.
            let holder = doc.lease.as_ref().map_or("", |l| l.holder.as_str());
            return Err(PipelineError::Source(format!(
                "FinOps hubs month {month} is being landed by run {holder}; this run's data lands with it or on this step's retry"
            )));
        }
        let folder = month_folder(&tenant, &month)?;
        let landed = self
            .land_month(&tenant, &month, &folder, doc, &holder)
            .await;
        if landed.is_err() {
            // Give the month back at once; the follow-up's retry lands it again.
            let _ = self
                .ledger
                .update_hubs_month(&tenant, &month, |d| {
                    let mine = d.lease.as_ref().is_some_and(|l| l.holder == holder);
                    if mine {
                        d.lease = None;
                    }
                    (mine, ())
                })
                .await;
        }
        landed.map(Some)
    }

    /// Lands `doc`'s composition, then again while the ledger's composition moved on.
    async fn land_month(
        &self,
        tenant: &str,
        month: &str,
        folder: &ObjectPath,
        mut doc: HubsMonth,
        holder: &str,
    ) -> Result<ObjectPath, PipelineError> {
        for _ in 0..MAX_ROUNDS {
            let id = doc.ingestion_id();
            self.write_folder(folder, id.as_deref(), &doc.composition())
                .await?;
            let now = self.clock.now();
            // Done, again with the newer composition, or the lease lost (ran out, and another
            // lander took the month: it lands what the ledger holds).
            let (next, (done, kept)) = self
                .ledger
                .update_hubs_month(tenant, month, |d| {
                    let mine = d.lease.as_ref().is_some_and(|l| l.holder == holder);
                    if !mine {
                        // Taken over while the lease ran out: the new holder rewrites the
                        // folder (deleting what this landing wrote) and records it.
                        return (false, (false, false));
                    }
                    if d.ingestion_id() == id {
                        d.landed = id.clone();
                        d.lease = None;
                        return (true, (true, true));
                    }
                    let kept = d.take_lease(holder, now, LEASE);
                    (kept, (false, kept))
                })
                .await?;
            if done {
                tracing::info!(month, folder = %folder, ingestion_id = id.as_deref().unwrap_or(""), "FOCUS files landed for FinOps hubs");
                return Ok(folder.join(HUBS_MANIFEST)?);
            }
            if !kept {
                return Err(PipelineError::Source(format!(
                    "FinOps hubs month {folder} was taken over by another lander"
                )));
            }
            doc = next;
        }
        Err(PipelineError::Source(format!(
            "FinOps hubs month {folder} kept changing while it was landed"
        )))
    }

    /// Replaces the folder's contents with the composition's files and, last, the manifest.
    async fn write_folder(
        &self,
        folder: &ObjectPath,
        id: Option<&str>,
        parts: &[Component],
    ) -> Result<(), PipelineError> {
        let hubs = self.hubs.as_ref().expect("checked by the caller");
        // The previous run's files (and manifest) go first, as hubs requires.
        hubs.delete_folder(folder).await?;
        let Some(id) = id else {
            return Ok(());
        };
        // The Azure lines of each invoice (or currency), from its usage's per-product totals;
        // usage without them (a partition past the ledger's limit) stays out, and the
        // reconciliation lands whole: the same total, invoice-line detail only.
        let mut usage_lines: BTreeMap<String, Option<BTreeSet<LineKey>>> = BTreeMap::new();
        let mut runs = Vec::with_capacity(parts.len());
        for c in parts {
            let run = self.ledger.get(&c.run.run_id).await?.ok_or_else(|| {
                PipelineError::Source(format!("run {} of the hubs dataset is gone", c.run.run_id))
            })?;
            if c.role == Role::Usage {
                let lines = self.usage_lines(&run).await?;
                if lines.is_none() {
                    tracing::warn!(run_id = %run.run_id, "usage kept no per-product totals; FinOps hubs gets its charges from the reconciliation alone");
                }
                usage_lines.insert(c.run.run_id.to_string(), lines);
            }
            runs.push(run);
        }
        let mut files = BTreeMap::new();
        for (c, run) in parts.iter().zip(&runs) {
            let leave_out = match &c.role {
                Role::Whole => None,
                Role::Usage => match usage_lines.get(c.run.run_id.as_str()) {
                    Some(Some(_)) => None,
                    _ => continue,
                },
                Role::ChargesBeside(u) => usage_lines.get(u.as_str()).and_then(Option::as_ref),
            };
            let written = self
                .write_run(hubs.as_ref(), folder, id, c, run, leave_out)
                .await?;
            files.extend(written);
        }
        let body = serde_json::json!({
            "ingestionId": id,
            "dataset": HUBS_DATASET,
            "focusVersion": billing_columnar::FOCUS_VERSION,
            "source": "partner-billing-export",
            "runs": parts.iter().map(|c| (c.label.clone(), c.run.run_id.to_string())).collect::<BTreeMap<_, _>>(),
            "files": files,
        });
        hubs.put_bytes(
            &folder.join(HUBS_MANIFEST)?,
            serde_json::to_vec_pretty(&body)
                .map_err(|e| PipelineError::Source(e.to_string()))?
                .into(),
            "application/json",
        )
        .await?;
        Ok(())
    }

    /// The (customer, product, SKU) of every usage total: the Azure lines of the
    /// reconciliation beside it.
    async fn usage_lines(
        &self,
        run: &RunRecord,
    ) -> Result<Option<BTreeSet<LineKey>>, PipelineError> {
        let Some(parts) = self.converted_parts(run).await? else {
            return Ok(None);
        };
        Ok(total_by_product(&parts).map(|lines| {
            lines
                .into_keys()
                .map(|(customer, _, p)| (customer, p.product_id, p.sku_id))
                .collect()
        }))
    }

    /// Writes one run's FOCUS files into the folder; returns their names and sizes. Rows of
    /// `leave_out` are filtered out of Microsoft's file and converted again.
    async fn write_run(
        &self,
        hubs: &dyn Destination,
        folder: &ObjectPath,
        id: &str,
        c: &Component,
        run: &RunRecord,
        leave_out: Option<&BTreeSet<LineKey>>,
    ) -> Result<BTreeMap<String, u64>, PipelineError> {
        let mut files = BTreeMap::new();
        let Some(out) = &run.output_folder else {
            return Ok(files);
        };
        // Data Explorer refuses a Parquet file without rows.
        for p in run.parts.iter().filter(|p| p.rows != Some(0)) {
            let (_, focus) = derived::derived_paths(out, p)?;
            let name = format!("{id}__{}-{}", c.label, focus.file_name());
            let (scratch, tax) = (Scratch::new(), Scratch::new());
            // (file, its name in the folder, whether it has rows)
            let mut landing = Vec::with_capacity(2);
            match leave_out {
                None => {
                    self.dest.fetch_to_file(&focus, &scratch.0).await?;
                    landing.push((&scratch, name, true));
                }
                Some(leave) => {
                    let raw = Scratch::new();
                    self.dest.fetch_to_file(&p.dest, &raw.0).await?;
                    let (kept, taxes) = self
                        .filter_focus(run, &raw.0, (&scratch.0, &tax.0), leave)
                        .await?;
                    // The Azure lines' tax: billed usage details their charges, not their tax.
                    let tax_name = format!("{id}__{}-azure-tax-{}", c.label, focus.file_name());
                    landing.push((&scratch, name, kept > 0));
                    landing.push((&tax, tax_name, taxes > 0));
                }
            }
            // Data Explorer refuses a Parquet file without rows.
            for (file, name, _) in landing.into_iter().filter(|(_, _, rows)| *rows) {
                let size = hubs
                    .put_file(&folder.join(&name)?, &file.0, PARQUET_CONTENT_TYPE)
                    .await?;
                files.insert(name, size);
            }
        }
        Ok(files)
    }

    /// The FOCUS view of the partition `raw` without the rows of `leave` into `out.0`, and
    /// the Tax rows of the rows of `leave` into `out.1`; returns the rows of each.
    async fn filter_focus(
        &self,
        run: &RunRecord,
        raw: &std::path::Path,
        out: (&std::path::Path, &std::path::Path),
        leave: &BTreeSet<LineKey>,
    ) -> Result<(u64, u64), PipelineError> {
        let (schema, mut options) =
            derived::schema_for(run.request.kind, run.request.attribute_set);
        options.view = billing_columnar::View::Focus;
        options.totals_by_product = false;
        let (kept_json, left_json) = (Scratch::new(), Scratch::new());
        let paths = (
            raw.to_path_buf(),
            out.0.to_path_buf(),
            out.1.to_path_buf(),
            kept_json.0.clone(),
            left_json.0.clone(),
        );
        let leave = leave.clone();
        tokio::task::spawn_blocking(move || {
            let (raw, out_kept, out_tax, mid_kept, mid_left) = paths;
            let (kept, left) = hubs::filter_partition(&raw, &mid_kept, &mid_left, &leave)?;
            let io = |e: std::io::Error| format!("temporary file: {e}");
            let convert = |from: &std::path::Path, to: &std::path::Path, tax_rows_only| {
                let input = std::fs::File::open(from).map_err(io)?;
                let output = std::fs::File::create(to).map_err(io)?;
                let options = billing_columnar::ConvertOptions {
                    tax_rows_only,
                    ..options.clone()
                };
                billing_columnar::convert(
                    std::io::BufReader::new(input),
                    &schema,
                    std::io::BufWriter::new(output),
                    &options,
                )
                .map(|r| r.focus_rows)
                .map_err(|e| format!("converting filtered reconciliation rows: {e}"))
            };
            let kept = if kept > 0 {
                convert(&mid_kept, &out_kept, false)?
            } else {
                0
            };
            let taxes = if left > 0 {
                convert(&mid_left, &out_tax, true)?
            } else {
                0
            };
            Ok((kept, taxes))
        })
        .await
        .map_err(|e| PipelineError::Source(format!("filter task: {e}")))?
        .map_err(PipelineError::Source)
    }
}
