//! `partner-billing-export export`: the real pipeline, run from a laptop. The same start / poll /
//! copy / ledger / `_manifest.json` code the Azure Functions run, with an in-process queue that
//! holds each poll until its Retry-After, copies a few partitions at a time, shows progress and
//! ends with a table. The run ledger in the output location makes it resumable: after Ctrl-C a
//! rerun continues the runs in progress, and finished partitions are never copied again.

pub mod args;
pub mod diagnose;
mod driver;
mod plan;
pub mod progress;
pub mod setup;
pub mod sign_in;
mod summary;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;

use crate::adapters::memory_queue::MemoryQueue;
use crate::adapters::storage::ObjectPath;
use crate::app::App;
use crate::auth::Audience;
use crate::config::DestinationConfig;
use crate::contracts::cli::{CliEvent, CliLine};
use crate::pipeline::{StartOutcome, Trigger};
use crate::settings as s;
use crate::telemetry::{init_tracing, shutdown_signal};
use crate::usecases::starts::start_plan;

pub use args::{ExitStatus, ExportArgs};
use diagnose::Service;
use driver::Driver;
use progress::{label, Mode, Origin, Progress};

/// A reason to stop before any export runs, and the exit status it means.
struct Fatal {
    status: ExitStatus,
    error: anyhow::Error,
}

fn usage(error: anyhow::Error) -> Fatal {
    Fatal {
        status: ExitStatus::Usage,
        error,
    }
}

/// Runs `export` and returns its exit status.
pub async fn export(args: ExportArgs) -> ExitStatus {
    let mode = if args.json {
        Mode::Json
    } else if std::io::stdout().is_terminal() {
        Mode::Live
    } else {
        Mode::Plain
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let settings = setup::settings_map(&args, |n| std::env::var(n).ok(), &cwd);
    let json_logs = settings
        .get(s::LOG_FORMAT)
        .is_some_and(|f| f.eq_ignore_ascii_case("json"));
    // Warnings and errors only: progress is the output; RUST_LOG=info shows the pipeline's log.
    init_tracing(json_logs, "warn");
    match run(&args, mode, &settings).await {
        Ok(status) => status,
        Err(Fatal { status, error }) => {
            if mode == Mode::Json {
                progress::print_line(&CliLine {
                    event: CliEvent::Error {
                        message: format!("{error:#}"),
                        exit_code: status.code(),
                    },
                    elapsed: None,
                });
            }
            eprintln!("partner-billing-export export: {error:#}");
            status
        }
    }
}

async fn run(
    args: &ExportArgs,
    mode: Mode,
    settings: &HashMap<String, String>,
) -> Result<ExitStatus, Fatal> {
    let env = |n: &str| std::env::var(n).ok();
    let setup = setup::load(args, settings, &env).map_err(usage)?;
    let partner = setup.partner.clone();
    let discovery = plan::needs_discovery(args, &partner.plan);
    let mut audiences = vec![Audience::Graph];
    if discovery {
        audiences.push(Audience::PartnerCenter);
    }
    match &setup.config.destination {
        DestinationConfig::Filesystem { directory } if !args.dry_run => {
            setup::check_writable(directory).map_err(usage)?
        }
        DestinationConfig::Blob { sas: None, .. } => audiences.push(Audience::Storage),
        _ => {}
    }
    setup::check_sign_in(&setup, &audiences)
        .await
        .map_err(usage)?;
    let queue = Arc::new(MemoryQueue::default());
    let version = setup.config.graph.version;
    let app = App::with_parts(
        setup.config,
        setup.tokens,
        queue.clone(),
        setup.events.clone(),
    )
    .map_err(usage)?;
    let mut progress = Progress::new(mode);

    let (plan, discovered) = plan_export(args, &app, &partner, discovery).await?;
    let prefix = &app.config.pipeline.output_prefix;
    let dest = app.pipeline.destination();
    let output = app
        .pipeline
        .output_prefix_for(&partner.id)
        .unwrap_or_else(|_| prefix.clone());
    let locations = summary::Locations {
        output: dest.locate(&output),
        ledger: ObjectPath::new(format!("{}/_ledger", prefix.as_str().trim_matches('/')))
            .map(|p| dest.locate(&p))
            .unwrap_or_default(),
        events: setup.events_file.as_ref().map(|p| p.display().to_string()),
    };
    for n in &plan.notes {
        progress.note(n);
    }
    progress.emit(CliEvent::Plan {
        exports: plan
            .requests
            .iter()
            .map(|p| p.request.to_string())
            .collect(),
        graph: format!("{}{}", app.config.graph.base_url, version.segment()),
        credential: setup.graph_credential.clone(),
        output: locations.output.clone(),
        invoice_months: discovered.map(|m| m.to_string()),
        dry_run: args.dry_run,
    });
    if mode != Mode::Json {
        progress.note(&format!(
            "{} exports to {} (Graph {}{}, signed in with {}{})",
            plan.requests.len(),
            locations.output,
            app.config.graph.base_url,
            version.segment(),
            setup.graph_credential,
            discovered
                .map(|m| format!("; invoices of {m} from Partner Center"))
                .unwrap_or_default()
        ));
    }
    if args.dry_run {
        dry_run(&plan, &mut progress);
        return Ok(ExitStatus::Completed);
    }
    show_done_and_skipped(&plan, dest, &mut progress);
    if plan.requests.is_empty() && plan.running.is_empty() {
        if !plan.finished.is_empty() {
            progress.note("nothing new to export (--force exports finished work again)");
        }
        progress.finish();
        summary::print(&progress, &locations, version, false);
        return Ok(summary::exit_status(&progress, false));
    }

    let driver = Driver::new(app.clone(), queue, usize::from(args.concurrency));
    let mut stop = Box::pin(shutdown_signal());
    let started = tokio::select! {
        s = start_plan(&app, &plan, Trigger::Cli) => s,
        _ = &mut stop => {
            progress.note("interrupted while starting exports; run the same command again to continue");
            return Ok(ExitStatus::Interrupted);
        }
    };
    // Runs a previous (interrupted) command left under way continue here.
    let resumed = plan.running.iter().map(|r| {
        (
            r.request.clone(),
            Ok(StartOutcome::Duplicate(Box::new(r.clone()))),
        )
    });
    let outcomes = started
        .results
        .into_iter()
        .map(|r| (r.planned.request, r.outcome))
        .chain(resumed);
    for (req, outcome) in outcomes {
        add_outcome(&driver, &mut progress, &req, outcome, version).await;
    }
    let interrupted = driver.run(&mut progress, &mut stop).await;
    progress.finish();
    summary::print(&progress, &locations, version, interrupted);
    Ok(summary::exit_status(&progress, interrupted))
}

/// Exports the plan leaves out: finished ones join the table (with their manifests), the
/// others are named with the reason (runs under way are resumed, not listed here).
fn show_done_and_skipped(
    plan: &crate::planner::Plan,
    dest: &dyn crate::pipeline::ports::storage::Destination,
    progress: &mut Progress,
) {
    let listed: std::collections::HashSet<_> = plan
        .running
        .iter()
        .chain(&plan.finished)
        .map(|r| r.run_id.to_string())
        .collect();
    for s in &plan.skipped {
        if !s.run_id.as_ref().is_some_and(|id| listed.contains(id)) {
            progress.note(&format!("skipped {}: {}", s.what, s.reason));
        }
    }
    for run in &plan.finished {
        progress.add_run(run.clone(), Origin::Exported);
        let manifest = run
            .output_folder
            .as_ref()
            .and_then(|f| f.join(crate::pipeline::layout::RUN_MANIFEST_NAME).ok())
            .map(|p| dest.locate(&p));
        if let Some(v) = progress.run_mut(&run.run_id) {
            v.manifest = manifest;
        }
    }
}

/// One start's outcome in the progress table; a run under way is handed to the driver.
async fn add_outcome(
    driver: &Driver,
    progress: &mut Progress,
    req: &crate::billing::ExportRequest,
    outcome: Result<StartOutcome, crate::pipeline::PipelineError>,
    version: crate::billing::GraphVersion,
) {
    match outcome {
        Ok(StartOutcome::Started(run)) => progress.add_run(*run, Origin::Started),
        Ok(StartOutcome::Rejected(run)) => progress.add_run(*run, Origin::Rejected),
        Ok(StartOutcome::Duplicate(run)) => {
            if let Err(e) = driver.requeue(&run).await {
                progress.not_started(label(req), format!("cannot resume: {e}"));
                return;
            }
            progress.add_run(*run, Origin::Resumed)
        }
        Err(e) => {
            let hint = match &e {
                crate::pipeline::PipelineError::Billing(b) => {
                    diagnose::billing(b, Service::Graph, version)
                }
                _ => None,
            };
            let why = match hint {
                Some(h) => format!("{e} (hint: {h})"),
                None => e.to_string(),
            };
            progress.not_started(label(req), why);
        }
    }
}

/// The partner's plan as `args` select it, and the months whose invoices were discovered.
/// A failed invoice discovery stops the command, with the fix when a user can make it.
async fn plan_export(
    args: &ExportArgs,
    app: &App,
    partner: &crate::config::PartnerConfig,
    discovery: bool,
) -> Result<(crate::planner::Plan, Option<args::MonthRange>), Fatal> {
    let version = app.config.graph.version;
    let now = time::OffsetDateTime::now_utc();
    let (scope, mut skipped) = plan::scope(args, &partner.plan, now.date());
    let mut plan = crate::usecases::plans::plan_for(app, partner, &scope, now).await;
    skipped.append(&mut plan.skipped);
    plan.skipped = skipped;
    if let Some(f) = plan.discovery_failure.take() {
        let problem = diagnose::billing(&f.error, Service::PartnerCenter, version);
        let hint = problem
            .as_ref()
            .map(|p| format!("\nhint: {p}"))
            .unwrap_or_default();
        return Err(Fatal {
            status: if problem.is_some() {
                ExitStatus::Usage
            } else {
                ExitStatus::SomeFailed
            },
            error: anyhow::anyhow!("cannot list invoices in Partner Center: {}{hint}", f.error),
        });
    }
    let discovered = (discovery && !scope.months.is_empty()).then(|| args::MonthRange {
        from: scope.months[0],
        to: *scope.months.last().expect("not empty"),
    });
    Ok((plan, discovered))
}

/// The plan, as `GET /api/plan` shows it: what would start, and what is left out and why.
fn dry_run(plan: &crate::planner::Plan, progress: &mut Progress) {
    for p in &plan.requests {
        progress.emit(CliEvent::Planned {
            export: label(&p.request),
            request: p.request.to_string(),
            action: "would start".into(),
        });
        if progress.mode() != Mode::Json {
            progress.note(&format!("  {:<40} would start", label(&p.request)));
        }
    }
    for s in &plan.skipped {
        progress.emit(CliEvent::Skipped {
            what: s.what.clone(),
            run_id: s.run_id.clone(),
            billing_month: s.billing_month,
            reason: s.reason.clone(),
        });
        if progress.mode() != Mode::Json {
            progress.note(&format!("  {:<40} {}", s.what, s.reason));
        }
    }
    progress.emit(CliEvent::DryRun {
        plan: Box::new(crate::usecases::plans::timer_plan(plan)),
    });
}
