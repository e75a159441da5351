//! After a run's files are complete: the invoice check (billed reconciliation against the
//! invoice, billed usage against its Azure lines) and the FinOps hubs landing of its FOCUS
//! files (`HUBS_INGESTION_CONTAINER`).
//!
//! What lands in hubs, and how, is `pipeline::hubs` and `service::hubs`.

use super::super::derived::{total_by_customer, total_by_product, Converted};
use super::super::hubs::Offer;
use super::super::invoice_check::{self, InvoiceCheck, Verdict};
use super::super::run::{RunRecord, RunState};
use super::{Pipeline, PipelineError};
use crate::billing::{ExportKind, ExportRequest, ExportScope};
use crate::contracts::events::{EventData, InvoiceChecked};
use crate::pipeline::ports::events::CloudEvent;

/// What the invoice check made of a completed run.
#[derive(Debug)]
pub(super) enum Checked {
    /// A verdict, announced; with the reconciliation run checked and the billed usage run
    /// it compared, if any.
    Made(Box<InvoiceCheck>, Box<RunRecord>, Option<Box<RunRecord>>),
    /// Billed usage whose reconciliation is still running: that run's check compares both
    /// and lands this run's hubs files.
    Waiting,
    /// Nothing to check (another kind, no Parquet, no invoice source, unreadable invoice).
    NotMade,
}

impl Pipeline {
    /// After a run's files are complete: the invoice check, then the FinOps hubs landing,
    /// which a mismatch withholds.
    pub(super) async fn check_and_land(&self, run: &RunRecord) -> Result<(), PipelineError> {
        match self.check_invoice(run).await? {
            Checked::Made(check, recon, usage) => {
                if check.verdict == Verdict::Mismatch {
                    return Ok(());
                }
                if let ExportScope::Invoice { invoice_id } = &recon.request.scope {
                    let offer = Offer::Invoice {
                        invoice: invoice_id.as_str(),
                        usage: usage.as_deref(),
                        reconciliation: Some(&recon),
                    };
                    self.offer_to_hubs(run, offer).await?;
                }
            }
            Checked::Waiting => {
                tracing::info!(run_id = %run.run_id, "billed usage waits for its invoice's reconciliation before FinOps hubs ingestion");
            }
            Checked::NotMade => {
                if run.parts.iter().any(|p| p.parquet_bytes.is_none()) {
                    return Ok(());
                }
                let offer = match &run.request.scope {
                    ExportScope::Period { .. } => Offer::Unbilled(run),
                    ExportScope::Invoice { invoice_id } => Offer::Invoice {
                        invoice: invoice_id.as_str(),
                        usage: run.request.kind.is_usage().then_some(run),
                        reconciliation: (!run.request.kind.is_usage()).then_some(run),
                    },
                };
                self.offer_to_hubs(run, offer).await?;
            }
        }
        Ok(())
    }

    /// The latest run of the other billed export of `run`'s invoice (same partner; the same
    /// attribute set preferred).
    async fn billed_sibling(
        &self,
        run: &RunRecord,
        kind: ExportKind,
    ) -> Result<Option<RunRecord>, PipelineError> {
        for set in [run.request.attribute_set, run.request.attribute_set.other()] {
            let req = ExportRequest {
                kind,
                attribute_set: set,
                ..run.request.clone()
            };
            if let Some(found) = self.ledger.run_of_request(&req.key()).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Every part's conversion result, or `None` when some part has none.
    pub(super) async fn converted_parts(
        &self,
        run: &RunRecord,
    ) -> Result<Option<Vec<Converted>>, PipelineError> {
        if run.no_data {
            return Ok(Some(Vec::new()));
        }
        let (results, _) = self.ledger.part_results(run).await?;
        let converted: Vec<Converted> = results.into_values().filter_map(|r| r.converted).collect();
        Ok((converted.len() == run.parts.len()).then_some(converted))
    }

    /// Checks a completed billed run against its invoice and announces the result: the
    /// reconciliation against `totalCharges`, and billed usage against the invoice's Azure
    /// lines once both exports have landed (whichever completes second compares them).
    pub(super) async fn check_invoice(&self, run: &RunRecord) -> Result<Checked, PipelineError> {
        // A partner's invoices are read with its own credential.
        let source = self
            .partners
            .get(&run.request.partner)
            .and_then(|p| p.invoices.as_ref());
        let (Some(source), ExportScope::Invoice { invoice_id }) = (source, &run.request.scope)
        else {
            return Ok(Checked::NotMade);
        };
        if !self.cfg.formats.parquet {
            return Ok(Checked::NotMade);
        }
        let (recon_run, usage_run) = match run.request.kind {
            ExportKind::BilledReconciliation => (
                run.clone(),
                self.billed_sibling(run, ExportKind::BilledUsage).await?,
            ),
            ExportKind::BilledUsage => {
                match self
                    .billed_sibling(run, ExportKind::BilledReconciliation)
                    .await?
                {
                    Some(r) if r.state == RunState::Completed => (r, Some(run.clone())),
                    Some(r) if !r.state.is_terminal() => return Ok(Checked::Waiting),
                    // No reconciliation to compare with (not exported, or it failed).
                    _ => return Ok(Checked::NotMade),
                }
            }
            _ => return Ok(Checked::NotMade),
        };
        if recon_run.no_data {
            return Ok(Checked::NotMade);
        }
        let Some(recon_parts) = self.converted_parts(&recon_run).await? else {
            return Ok(Checked::NotMade);
        };
        let totals = total_by_customer(&recon_parts)
            .ok_or_else(|| PipelineError::Source("reconciliation totals overflow".into()))?;
        let invoice = match source.invoice_total(invoice_id).await {
            Ok(i) => i,
            Err(e) => {
                // Not a verdict: the data may be right. Said loudly, but the run still completes:
                // a deployment without Partner Center access (INVOICE_DISCOVERY=off) must not
                // hold every completion event back forever.
                tracing::error!(run_id = %run.run_id, invoice = %invoice_id, error = %e, "could not read the invoice from Partner Center; invoice check not made");
                return Ok(Checked::NotMade);
            }
        };
        let tolerance = self.cfg.invoice_tolerance;
        let mut check =
            invoice_check::check(&invoice, &totals, tolerance).map_err(PipelineError::Source)?;
        let usage_run = usage_run.filter(|u| u.state == RunState::Completed);
        if let Some(u) = &usage_run {
            let usage_parts = self.converted_parts(u).await?;
            match (
                usage_parts.as_deref().and_then(total_by_product),
                total_by_product(&recon_parts),
            ) {
                (Some(usage), Some(lines)) => {
                    let compared =
                        invoice_check::check_usage(u.run_id.as_str(), &usage, &lines, tolerance)
                            .map_err(PipelineError::Source)?;
                    check = check.with_usage(compared);
                }
                _ => {
                    tracing::warn!(run_id = %run.run_id, invoice = %invoice_id, "billed usage not compared with the invoice's Azure lines: a part kept no per-product totals");
                }
            }
        }
        let (event_type, suffix) = match check.verdict {
            Verdict::Reconciled => {
                tracing::info!(run_id = %run.run_id, invoice = %invoice_id, total = %check.data_total, usage_compared = check.azure_usage.is_some(), "invoice reconciled");
                (
                    EventData::InvoiceReconciled as fn(InvoiceChecked) -> EventData,
                    "reconciled",
                )
            }
            Verdict::Mismatch => {
                tracing::error!(run_id = %run.run_id, invoice = %invoice_id, invoice_total = %check.invoice_total, data_total = %check.data_total, difference = %check.difference, usage_mismatch = check.azure_usage.as_ref().is_some_and(|u| u.verdict == Verdict::Mismatch), "invoice mismatch: the data does not add up to the invoice; FinOps hubs ingestion withheld");
                (
                    EventData::InvoiceMismatch as fn(InvoiceChecked) -> EventData,
                    "mismatch",
                )
            }
        };
        // Named by the runs compared, not by the finisher: when both billed runs finish at
        // once and both compare, consumers see one event id twice and drop the duplicate.
        let id = match &check.azure_usage {
            Some(u) => format!("{}-{}-invoice-{suffix}", recon_run.run_id, u.usage_run_id),
            None => format!("{}-invoice-{suffix}", recon_run.run_id),
        };
        let ev = CloudEvent::of(
            &self.cfg.event_source,
            id,
            format!("invoices/{invoice_id}/runs/{}", recon_run.run_id),
            &event_type(InvoiceChecked {
                run_id: recon_run.run_id.to_string(),
                reconciliation_run_id: recon_run.run_id.to_string(),
                check: check.clone(),
            }),
        );
        self.events.publish(&[ev]).await?;
        let compared = check.azure_usage.is_some();
        Ok(Checked::Made(
            Box::new(check),
            Box::new(recon_run),
            usage_run.filter(|_| compared).map(Box::new),
        ))
    }
}
