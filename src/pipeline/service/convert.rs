//! Deriving typed Parquet and the FOCUS view from a copied partition (`OUTPUT_FORMATS`).
//!
//! The copy is read back from the destination (not the source, whose SAS may have expired),
//! into a temporary file, converted on a blocking thread into two temporary files, and those
//! are stored beside it. Memory stays bounded by the converter's row groups; the files are
//! named after the partition, so a retry overwrites instead of doubling.

use std::path::PathBuf;

use super::super::derived::{self, Converted, PARQUET_CONTENT_TYPE};
use super::super::run::{PartRecord, RunRecord};
use super::{Pipeline, PipelineError};

/// Temporary files of one conversion, removed however it ends.
struct Scratch(Vec<PathBuf>);

impl Scratch {
    fn new(n: usize) -> Self {
        let dir = std::env::temp_dir();
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self(
            (0..n)
                .map(|i| dir.join(format!("pbe-{id}-{i}.tmp")))
                .collect(),
        )
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The FOCUS view's billing period of a run: the calendar month of its billing month (the
/// invoice's service month for billed exports, the export's month for unbilled ones), so that
/// latent usage and refunds of earlier months stay in the period they are invoiced in. Exact
/// for billed runs: the export serves new-commerce invoices only, and those bill a calendar
/// month.
fn focus_billing_period(run: &RunRecord) -> Option<billing_columnar::BillingPeriod> {
    let month = super::super::layout::run_billing_month(run)?;
    let y: i64 = month.get(..4)?.parse().ok()?;
    let m: u32 = month.get(4..6)?.parse().ok()?;
    if !(1..=12).contains(&m) {
        return None;
    }
    let end = if m == 12 {
        (y + 1, 1, 1)
    } else {
        (y, m + 1, 1)
    };
    Some(billing_columnar::BillingPeriod {
        start: (y, m, 1),
        end,
    })
}

impl Pipeline {
    pub(super) async fn convert_part(
        &self,
        run: &RunRecord,
        part: &PartRecord,
    ) -> Result<Converted, PipelineError> {
        let folder = run
            .output_folder
            .as_ref()
            .ok_or_else(|| PipelineError::Source("copying run has no output folder".into()))?;
        let (typed_dest, focus_dest) = derived::derived_paths(folder, part)?;
        let scratch = Scratch::new(3);
        let (src, typed, focus) = (
            scratch.0[0].clone(),
            scratch.0[1].clone(),
            scratch.0[2].clone(),
        );
        self.dest.fetch_to_file(&part.dest, &src).await?;
        let (schema, mut options) =
            derived::schema_for(run.request.kind, run.request.attribute_set);
        options.billing_period = focus_billing_period(run);
        let name = part.name.clone();
        let report = tokio::task::spawn_blocking(move || {
            let open = |p: &PathBuf| std::fs::File::open(p).map(std::io::BufReader::new);
            let create = |p: &PathBuf| std::fs::File::create(p).map(std::io::BufWriter::new);
            let io = |e: std::io::Error| format!("temporary file: {e}");
            billing_columnar::convert_both(
                open(&src).map_err(io)?,
                &schema,
                create(&typed).map_err(io)?,
                create(&focus).map_err(io)?,
                &options,
            )
            .map_err(|e| format!("converting {name} to Parquet: {e}"))
        })
        .await
        .map_err(|e| PipelineError::Source(format!("conversion task: {e}")))?
        .map_err(PipelineError::Source)?;
        self.dest
            .put_file(&typed_dest, &scratch.0[1], PARQUET_CONTENT_TYPE)
            .await?;
        self.dest
            .put_file(&focus_dest, &scratch.0[2], PARQUET_CONTENT_TYPE)
            .await?;
        if !report.unknown_columns.is_empty() {
            let names: Vec<&str> = report
                .unknown_columns
                .iter()
                .map(|u| u.name.as_str())
                .collect();
            tracing::warn!(run_id = %run.run_id, part = part.index, unknown = ?names, "partition has columns the schema does not know; kept as strings");
        }
        Ok(Converted::from_report(run.request.kind, &report))
    }
}
