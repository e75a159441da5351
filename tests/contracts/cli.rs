//! The `export --json` lines against their fixture.

use super::*;

/// The run rows the CLI's closing lines show: one completed, one given up.
fn cli_fixture_runs() -> (CliRun, CliRun) {
    let run_id: partner_billing_export::pipeline::RunId =
        "20261109t060000-4c1d2e3f4a5b".parse().unwrap();
    let export = "billedUsage G026100001".to_string();
    let failure = |code: &str, message: &str| CliFailure {
        code: code.into(),
        message: message.into(),
    };
    let completed = CliRun {
        run_id: run_id.clone(),
        export: export.clone(),
        kind: ExportKind::BilledUsage,
        scope: CliScope {
            invoice_id: Some("G026100001".parse().unwrap()),
            billing_period: None,
            currency_code: None,
        },
        attribute_set: "full".into(),
        origin: "started".into(),
        status: "completed".into(),
        polls: 3,
        files: 2,
        parts_done: 2,
        parts_done_before: 0,
        parts_copied: 1,
        parts_skipped: 1,
        bytes: 2001,
        rows: Some(81),
        manifest: Some("/data/out/folder/_manifest.json".into()),
        failure: None,
        gave_up: None,
    };
    let gave_up = CliRun {
        run_id: "20261109t061500-9a8b7c6d5e4f".parse().unwrap(),
        export: "unbilledUsage current USD".into(),
        kind: ExportKind::UnbilledUsage,
        scope: CliScope {
            invoice_id: None,
            billing_period: Some(BillingPeriod::Current),
            currency_code: Some("USD".parse().unwrap()),
        },
        attribute_set: "basic".into(),
        origin: "resumed".into(),
        status: "gave up".into(),
        polls: 1,
        files: 0,
        parts_done: 0,
        parts_done_before: 0,
        parts_copied: 0,
        parts_skipped: 0,
        bytes: 0,
        rows: None,
        manifest: None,
        failure: Some(failure("5000", "No data available")),
        gave_up: Some("the queue driver stopped after 10 deliveries".into()),
    };
    (completed, gave_up)
}

fn cli_line(event: CliEvent, elapsed: f64) -> CliLine {
    CliLine {
        event,
        elapsed: Some(elapsed),
    }
}

#[test]
fn cli_json_lines() {
    let (completed, gave_up) = cli_fixture_runs();
    let run_id = completed.run_id.clone();
    let export = completed.export.clone();
    let line = cli_line;
    let failure = |code: &str, message: &str| CliFailure {
        code: code.into(),
        message: message.into(),
    };
    let mut lines = vec![
        line(
            CliEvent::Plan {
                exports: vec!["billedUsage invoice G026100001 (full)".into()],
                graph: "https://graph.microsoft.com/v1.0".into(),
                credential: "device code (you@contoso.com)".into(),
                output: "/data/out/partner-billing".into(),
                invoice_months: Some("2026-10".into()),
                dry_run: false,
            },
            0.4,
        ),
        line(
            CliEvent::Planned {
                export: export.clone(),
                request: "billedUsage invoice G026100001 (full)".into(),
                action: "would start".into(),
            },
            0.4,
        ),
        line(
            CliEvent::DryRun {
                plan: Box::new(partner_billing_export::contracts::plan::TimerPlan {
                    start: vec![],
                    skipped: vec![partner_billing_export::contracts::plan::SkippedExport {
                        billing_month: Some("2026-10".parse().unwrap()),
                        what: "billedUsage G026100001 (full)".into(),
                        run_id: Some(run_id.to_string()),
                        reason: "already exported".into(),
                    }],
                    notes: vec![],
                    invoices_missing: None,
                    discovery_failure: None,
                    partner: None,
                    billing_months: None,
                }),
            },
            0.4,
        ),
        line(
            CliEvent::Note {
                message: "1 invoice of 2026-10 listed in Partner Center".into(),
            },
            0.5,
        ),
        line(
            CliEvent::NotStarted {
                export: "billedReconciliation G026100001".into(),
                reason: "Graph refused the export".into(),
            },
            0.9,
        ),
        line(
            CliEvent::Run {
                run_id: run_id.clone(),
                export: export.clone(),
                outcome: "started".into(),
                state: RunState::Polling,
                parts_done: 0,
                parts_total: 0,
            },
            1.2,
        ),
        line(
            CliEvent::State {
                run_id: run_id.clone(),
                export: export.clone(),
                state: RunState::Copying,
                polls: 3,
                parts_done: 1,
                parts_total: 2,
                bytes: 1000,
                failure: None,
            },
            30.1,
        ),
        line(
            CliEvent::PartDone {
                run_id: run_id.clone(),
                export: export.clone(),
                part: 1,
                method: "serverSide".into(),
                bytes: 1001,
                parts_done: 2,
                parts_total: 2,
            },
            31.0,
        ),
        line(
            CliEvent::State {
                run_id: run_id.clone(),
                export: export.clone(),
                state: RunState::Failed,
                polls: 7,
                parts_done: 0,
                parts_total: 0,
                bytes: 0,
                failure: Some(failure(
                    "deadline",
                    "the operation was still running at the poll deadline",
                )),
            },
            900.0,
        ),
    ];
    lines.extend(cli_closing_lines(completed, gave_up));
    check("cli-json-lines", &lines);
}

/// The closing summary line of the CLI's output.
fn cli_closing_lines(completed: CliRun, gave_up: CliRun) -> Vec<CliLine> {
    let line = cli_line;
    let run_id = completed.run_id.clone();
    let export = completed.export.clone();
    vec![
        line(
            CliEvent::GaveUp {
                run_id: run_id.clone(),
                export: export.clone(),
                reason: "the queue driver stopped after 10 deliveries".into(),
            },
            901.5,
        ),
        CliLine {
            event: CliEvent::Summary(Box::new(CliSummary {
                exit_code: 1,
                interrupted: false,
                runs: vec![completed, gave_up],
                partitions: 2,
                parts_copied: 1,
                parts_already_there: 1,
                bytes: 2001,
                rows: 81,
                seconds: 902.25,
                output: "/data/out/partner-billing".into(),
                ledger: "/data/out/partner-billing/_ledger".into(),
                events: Some("/data/out/events.jsonl".into()),
                hints: vec!["Graph had no data for the export (code 5000)".into()],
                not_started: vec![CliNotStarted {
                    export: "billedReconciliation G026100001".into(),
                    reason: "Graph refused the export".into(),
                }],
            })),
            elapsed: None,
        },
        CliLine {
            event: CliEvent::Error {
                message: "the partner list is not JSON".into(),
                exit_code: 2,
            },
            elapsed: None,
        },
    ]
}
