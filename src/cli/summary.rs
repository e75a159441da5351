//! The closing table of `export` (or its JSON form) and the exit status it implies.

use std::collections::BTreeSet;

use super::args::ExitStatus;
use super::diagnose;
use super::progress::{human_bytes, Progress, RunView};
use crate::billing::{ExportScope, GraphVersion};
use crate::contracts::cli::{CliEvent, CliLine, CliNotStarted, CliRun, CliScope, CliSummary};
use crate::pipeline::RunState;

/// Where things landed, for the last lines of the table.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    pub output: String,
    pub ledger: String,
    pub events: Option<String>,
}

/// `completed`, `no data`, `failed`, `interrupted`, `gave up`.
fn status(v: &RunView, interrupted: bool) -> &'static str {
    match (&v.record.state, &v.record.failure, &v.gave_up) {
        (_, _, Some(_)) => "gave up",
        (RunState::Completed, _, _) if v.record.no_data => "no data",
        (RunState::Completed, _, _) => "completed",
        (RunState::Failed, Some(f), _) if diagnose::is_no_data(f) => "no data",
        (RunState::Failed, _, _) => "failed",
        _ if interrupted => "interrupted",
        _ => "unfinished",
    }
}

pub fn exit_status(p: &Progress, interrupted: bool) -> ExitStatus {
    if interrupted {
        return ExitStatus::Interrupted;
    }
    let ok = p.unstarted().is_empty()
        && p.runs()
            .iter()
            .all(|v| matches!(status(v, false), "completed" | "no data"));
    if ok {
        ExitStatus::Completed
    } else {
        ExitStatus::SomeFailed
    }
}

/// Distinct fixes for the failures seen.
fn hints(p: &Progress, version: GraphVersion) -> Vec<String> {
    p.runs()
        .iter()
        .filter_map(|v| v.record.failure.as_ref())
        .filter_map(|f| diagnose::failure(f, version))
        .map(|pr| pr.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn run_json(v: &RunView, interrupted: bool) -> CliRun {
    let r = &v.record;
    let scope = match &r.request.scope {
        ExportScope::Invoice { invoice_id } => CliScope {
            invoice_id: Some(invoice_id.clone()),
            billing_period: None,
            currency_code: None,
        },
        ExportScope::Period { period, currency } => CliScope {
            invoice_id: None,
            billing_period: Some(*period),
            currency_code: Some(currency.clone()),
        },
    };
    CliRun {
        run_id: r.run_id.clone(),
        export: v.label(),
        kind: r.request.kind,
        scope,
        attribute_set: r.request.attribute_set.as_str().to_string(),
        origin: v.origin.as_str().to_string(),
        status: status(v, interrupted).to_string(),
        polls: r.polls,
        files: r.parts.len(),
        parts_done: r.parts_done(),
        parts_done_before: v.done_before,
        parts_copied: v.copied,
        parts_skipped: v.skipped,
        bytes: r.bytes_copied(),
        rows: r.rows_copied(),
        manifest: v.manifest.clone(),
        failure: r.failure.as_ref().map(super::progress::cli_failure),
        gave_up: v.gave_up.clone(),
    }
}

struct Totals {
    partitions: usize,
    copied: usize,
    in_place: usize,
    bytes: u64,
    rows: u64,
}

fn totals(p: &Progress) -> Totals {
    let runs = p.runs();
    Totals {
        partitions: runs.iter().map(|v| v.record.parts_done()).sum(),
        copied: runs.iter().map(|v| v.copied).sum(),
        in_place: runs.iter().map(|v| v.skipped + v.done_before).sum(),
        bytes: runs.iter().map(|v| v.record.bytes_copied()).sum(),
        rows: runs.iter().filter_map(|v| v.record.rows_copied()).sum(),
    }
}

pub fn print(p: &Progress, loc: &Locations, version: GraphVersion, interrupted: bool) {
    let exit = exit_status(p, interrupted);
    let t = totals(p);
    let hints = hints(p, version);
    let mut runs: Vec<&RunView> = p.runs().iter().collect();
    runs.sort_by_key(|v| v.label());
    if p.mode() == super::progress::Mode::Json {
        let summary = CliSummary {
            exit_code: exit.code(),
            interrupted,
            runs: runs.iter().map(|v| run_json(v, interrupted)).collect(),
            partitions: t.partitions,
            parts_copied: t.copied,
            parts_already_there: t.in_place,
            bytes: t.bytes,
            rows: t.rows,
            seconds: p.elapsed().as_secs_f64(),
            output: loc.output.clone(),
            ledger: loc.ledger.clone(),
            events: loc.events.clone(),
            hints,
            not_started: p
                .unstarted()
                .iter()
                .map(|(e, why)| CliNotStarted {
                    export: e.clone(),
                    reason: why.clone(),
                })
                .collect(),
        };
        super::progress::print_line(&CliLine {
            event: CliEvent::Summary(Box::new(summary)),
            elapsed: None,
        });
        return;
    }
    println!();
    println!("Runs:");
    for v in &runs {
        let r = &v.record;
        let st = status(v, interrupted);
        let why = v
            .gave_up
            .clone()
            .or_else(|| r.failure.as_ref().map(|f| f.message.clone()));
        match (st, why) {
            ("completed" | "interrupted" | "unfinished", _) | (_, None) => println!(
                "  {st:<11} {:<40} {:>3}/{:<3} files {:>12} {:>9} rows  {} copied, {} already there  ({})",
                v.label(),
                r.parts_done(),
                r.parts.len(),
                human_bytes(r.bytes_copied()),
                r.rows_copied()
                    .map_or_else(|| "n/a".to_string(), |n| n.to_string()),
                v.copied,
                v.skipped + v.done_before,
                r.run_id
            ),
            (_, Some(why)) => println!("  {st:<11} {:<40} {why}  ({})", v.label(), r.run_id),
        }
    }
    for (export, why) in p.unstarted() {
        println!("  {:<11} {export:<40} {why}", "not started");
    }
    let count = |s: &str| runs.iter().filter(|v| status(v, interrupted) == s).count();
    println!();
    println!(
        "Summary: {} runs ({} completed, {} no data, {} failed{}), {} partitions ({} copied, {} already there), {}, {} rows, {:.1} s",
        runs.len(),
        count("completed"),
        count("no data"),
        count("failed") + count("gave up") + p.unstarted().len(),
        if interrupted {
            format!(", {} interrupted", count("interrupted"))
        } else {
            String::new()
        },
        t.partitions,
        t.copied,
        t.in_place,
        human_bytes(t.bytes),
        t.rows,
        p.elapsed().as_secs_f64()
    );
    println!("Output:  {}", loc.output);
    println!("Ledger:  {}", loc.ledger);
    if let Some(e) = &loc.events {
        println!("Events:  {e}");
    }
    for h in &hints {
        println!("Hint:    {h}");
    }
    if interrupted {
        println!(
            "Interrupted: run the same command again to continue; finished partitions are not copied again."
        );
    }
}
