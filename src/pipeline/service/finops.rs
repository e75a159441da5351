//! After a run's files are complete: the invoice check (billed reconciliation) and the FinOps
//! hubs landing of its FOCUS files (`HUBS_INGESTION_CONTAINER`).
//!
//! Hubs layout, as FinOps hubs document their `ingestion` container (finops-toolkit,
//! docs-mslearn/toolkit/hubs/data-processing.md, "About the ingestion container", hubs 0.7+):
//! `{dataset}/{yyyy}/{mm}/{scope-path}/{ingestion-id}__{original-file-name}.parquet`, then an
//! empty-or-any `manifest.json` in the same folder once every file is there, which queues the
//! Data Explorer ingestion. Files with another ingestion id in the same folder are replaced
//! by hubs, so each export gets its own scope folder and the run id is the ingestion id: a new
//! unbilled run replaces the previous day's rows instead of adding to them.

use std::collections::BTreeMap;

use super::super::derived::{self, total_by_customer, PARQUET_CONTENT_TYPE};
use super::super::invoice_check::{self, InvoiceCheck, Verdict};
use super::super::layout;
use super::super::run::RunRecord;
use super::{Pipeline, PipelineError};
use crate::adapters::events::{CloudEvent, INVOICE_MISMATCH, INVOICE_RECONCILED};
use crate::adapters::storage::ObjectPath;
use crate::billing::{ExportKind, ExportScope};

/// The hubs dataset our FOCUS files belong to (hubs' FOCUS cost table).
pub const HUBS_DATASET: &str = "Costs";
pub const HUBS_MANIFEST: &str = "manifest.json";

impl Pipeline {
    /// Checks a completed billed reconciliation run against its invoice and announces the
    /// result. `None` when there is nothing to check (another kind, no rows read, no source).
    pub(super) async fn check_invoice(
        &self,
        run: &RunRecord,
    ) -> Result<Option<InvoiceCheck>, PipelineError> {
        // A listed partner's invoices are read with its own credential.
        let source = match self.partners.get(&run.request.partner) {
            Some(p) => p.invoices.as_ref(),
            None => self.invoices.as_ref(),
        };
        let (Some(source), ExportScope::Invoice { invoice_id }) = (source, &run.request.scope)
        else {
            return Ok(None);
        };
        if run.request.kind != ExportKind::BilledReconciliation
            || run.no_data
            || !self.cfg.formats.parquet
        {
            return Ok(None);
        }
        let (results, _) = self.ledger.part_results(run).await?;
        let converted: Vec<_> = results
            .values()
            .filter_map(|r| r.converted.as_ref())
            .collect();
        if converted.len() != run.parts.len() {
            return Ok(None);
        }
        let totals = total_by_customer(converted)
            .ok_or_else(|| PipelineError::Source("reconciliation totals overflow".into()))?;
        let invoice = match source.invoice_total(invoice_id).await {
            Ok(i) => i,
            Err(e) => {
                // Not a verdict: the data may be right. Said loudly, but the run still completes:
                // a deployment without Partner Center access (INVOICE_DISCOVERY=off) must not
                // hold every completion event back forever.
                tracing::error!(run_id = %run.run_id, invoice = %invoice_id, error = %e, "could not read the invoice from Partner Center; invoice check not made");
                return Ok(None);
            }
        };
        let check = invoice_check::check(&invoice, &totals, self.cfg.invoice_tolerance)
            .map_err(PipelineError::Source)?;
        let (event_type, suffix) = match check.verdict {
            Verdict::Reconciled => {
                tracing::info!(run_id = %run.run_id, invoice = %invoice_id, total = %check.data_total, "invoice reconciled");
                (INVOICE_RECONCILED, "reconciled")
            }
            Verdict::Mismatch => {
                tracing::error!(run_id = %run.run_id, invoice = %invoice_id, invoice_total = %check.invoice_total, data_total = %check.data_total, difference = %check.difference, "invoice mismatch: the reconciliation data does not add up to the invoice; FinOps hubs ingestion withheld");
                (INVOICE_MISMATCH, "mismatch")
            }
        };
        let mut data =
            serde_json::to_value(&check).map_err(|e| PipelineError::Source(e.to_string()))?;
        data["runId"] = serde_json::json!(run.run_id);
        let ev = CloudEvent::new(
            &self.cfg.event_source,
            event_type,
            format!("{}-invoice-{suffix}", run.run_id),
            format!("invoices/{invoice_id}/runs/{}", run.run_id),
            data,
        );
        self.events.publish(&[ev]).await?;
        Ok(Some(check))
    }

    /// Copies the run's FOCUS files into the hubs ingestion container and, last, the
    /// `manifest.json` that starts ingestion; withheld when the invoice did not balance.
    pub(super) async fn land_in_hubs(
        &self,
        run: &RunRecord,
        check: Option<&InvoiceCheck>,
    ) -> Result<Option<ObjectPath>, PipelineError> {
        let Some(hubs) = self.hubs.as_ref() else {
            return Ok(None);
        };
        if run.no_data || run.parts.iter().any(|p| p.parquet_bytes.is_none()) {
            return Ok(None);
        }
        if check.is_some_and(|c| c.verdict == Verdict::Mismatch) {
            return Ok(None);
        }
        let (Some(folder), Some(month)) = (&run.output_folder, layout::run_billing_month(run))
        else {
            return Ok(None);
        };
        let tenant = run
            .manifest
            .as_ref()
            .map(|m| m.partner_tenant_id.as_str())
            .filter(|t| !t.is_empty())
            .unwrap_or("partner");
        let who = match &run.request.scope {
            ExportScope::Invoice { invoice_id } => invoice_id.to_string(),
            ExportScope::Period { period, currency } => format!("{period}-{currency}"),
        };
        let target = ObjectPath::new(format!(
            "{HUBS_DATASET}/{}/{}/csp/{tenant}/{}/{who}",
            &month[..4],
            &month[4..],
            run.request.kind.slug()
        ))?;
        let scratch =
            std::env::temp_dir().join(format!("pbe-hubs-{}.tmp", uuid::Uuid::new_v4().simple()));
        let mut files = BTreeMap::new();
        for p in &run.parts {
            let (_, focus) = derived::derived_paths(folder, p)?;
            let name = format!("{}__{}", run.run_id, focus.file_name());
            let dest = target.join(&name)?;
            let copied = async {
                self.dest.fetch_to_file(&focus, &scratch).await?;
                hubs.put_file(&dest, &scratch, PARQUET_CONTENT_TYPE).await
            }
            .await;
            let _ = std::fs::remove_file(&scratch);
            files.insert(name, copied?);
        }
        let manifest = target.join(HUBS_MANIFEST)?;
        let body = serde_json::json!({
            "ingestionId": run.run_id,
            "dataset": HUBS_DATASET,
            "focusVersion": billing_columnar::FOCUS_VERSION,
            "source": "partner-billing-export",
            "files": files,
        });
        hubs.put_bytes(
            &manifest,
            serde_json::to_vec_pretty(&body)
                .map_err(|e| PipelineError::Source(e.to_string()))?
                .into(),
            "application/json",
        )
        .await?;
        tracing::info!(run_id = %run.run_id, folder = %target, files = files.len(), "FOCUS files landed for FinOps hubs");
        Ok(Some(manifest))
    }
}
