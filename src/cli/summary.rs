//! The closing table of `export` (or its JSON form) and the exit status it implies.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::args::ExitStatus;
use super::diagnose;
use super::progress::{human_bytes, Progress, RunView};
use crate::billing::{ExportScope, GraphVersion};
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

fn run_json(v: &RunView, interrupted: bool) -> Value {
    let r = &v.record;
    let mut scope = json!({});
    match &r.request.scope {
        ExportScope::Invoice { invoice_id } => scope["invoiceId"] = json!(invoice_id),
        ExportScope::Period { period, currency } => {
            scope["billingPeriod"] = json!(period.as_str());
            scope["currencyCode"] = json!(currency);
        }
    }
    json!({
        "runId": r.run_id,
        "export": v.label(),
        "kind": r.request.kind.as_str(),
        "scope": scope,
        "attributeSet": r.request.attribute_set.as_str(),
        "origin": v.origin.as_str(),
        "status": status(v, interrupted),
        "polls": r.polls,
        "files": r.parts.len(),
        "partsDone": r.parts_done(),
        "partsDoneBefore": v.done_before,
        "partsCopied": v.copied,
        "partsSkipped": v.skipped,
        "bytes": r.bytes_copied(),
        "rows": r.rows_copied(),
        "manifest": v.manifest,
        "failure": r.failure.as_ref().map(|f| json!({"code": f.code.as_str(), "message": f.message})),
        "gaveUp": v.gave_up,
    })
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
        println!(
            "{}",
            json!({
                "event": "summary",
                "exitCode": exit.code(),
                "interrupted": interrupted,
                "runs": runs.iter().map(|v| run_json(v, interrupted)).collect::<Vec<_>>(),
                "partitions": t.partitions,
                "partsCopied": t.copied,
                "partsAlreadyThere": t.in_place,
                "bytes": t.bytes,
                "rows": t.rows,
                "seconds": p.elapsed().as_secs_f64(),
                "output": loc.output,
                "ledger": loc.ledger,
                "events": loc.events,
                "hints": hints,
                "notStarted": p.unstarted().iter()
                    .map(|(e, why)| json!({"export": e, "reason": why}))
                    .collect::<Vec<_>>(),
            })
        );
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
