//! Starting what a plan holds, a few exports at a time, keeping every outcome for the front
//! end to render (log lines, a status body, progress rows).

use futures::StreamExt;

use crate::app::App;
use crate::billing::{ExportRequest, PartnerId};
use crate::pipeline::{PipelineError, StartOutcome, Trigger};
use crate::planner::{Plan, Planned};

/// Exports started at the same time (each partner's Graph client bounds its own calls too).
pub const START_CONCURRENCY: usize = 8;

/// One planned export and what starting it came to.
#[derive(Debug)]
pub struct StartResult {
    pub planned: Planned,
    pub outcome: Result<StartOutcome, PipelineError>,
}

/// What starting one partner's plan came to.
#[derive(Debug)]
pub struct StartReport {
    pub partner: PartnerId,
    pub results: Vec<StartResult>,
    /// Exports the plan left out (already exported, running, given up, ...).
    pub skipped: usize,
}

/// Counts of a [`StartReport`]'s outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartCounts {
    pub started: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub failed: usize,
}

impl StartReport {
    pub fn counts(&self) -> StartCounts {
        let mut c = StartCounts::default();
        for r in &self.results {
            match &r.outcome {
                Ok(StartOutcome::Started(_)) => c.started += 1,
                Ok(StartOutcome::Duplicate(_)) => c.duplicates += 1,
                Ok(StartOutcome::Rejected(_)) => c.rejected += 1,
                Err(_) => c.failed += 1,
            }
        }
        c
    }

    /// The exports that could not be started (Graph or the ledger did not answer), with why.
    pub fn failures(&self) -> impl Iterator<Item = (&ExportRequest, &PipelineError)> {
        self.results.iter().filter_map(|r| match &r.outcome {
            Err(e) => Some((&r.planned.request, e)),
            Ok(_) => None,
        })
    }
}

/// Starts every export `plan` holds, [`START_CONCURRENCY`] at a time, in plan order.
pub async fn start_plan(app: &App, plan: &Plan, trigger: Trigger) -> StartReport {
    let results = futures::stream::iter(plan.requests.iter().cloned())
        .map(|planned| async move {
            let outcome = app
                .pipeline
                .start_planned(planned.request.clone(), trigger, planned.billing_month)
                .await;
            if let Err(e) = &outcome {
                tracing::error!(request = %planned.request, error = %e, "could not start export");
            }
            StartResult { planned, outcome }
        })
        .buffered(START_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    StartReport {
        partner: plan.partner.clone(),
        results,
        skipped: plan.skipped.len(),
    }
}
