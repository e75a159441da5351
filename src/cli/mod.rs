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

use futures::StreamExt;

use crate::adapters::memory_queue::MemoryQueue;
use crate::adapters::storage::ObjectPath;
use crate::app::App;
use crate::auth::Audience;
use crate::billing::ExportRequest;
use crate::config::DestinationConfig;
use crate::contracts::cli::{CliEvent, CliLine};
use crate::pipeline::{RunRecord, StartOutcome, Trigger};
use crate::settings as s;
use crate::telemetry::{init_tracing, shutdown_signal};

pub use args::{ExitStatus, ExportArgs};
use diagnose::Service;
use driver::Driver;
use progress::{label, Mode, Origin, Progress};

/// Exports started at the same time.
const START_CONCURRENCY: usize = 8;

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

    let today = time::OffsetDateTime::now_utc().date();
    let plan = plan::plan(args, &partner, app.invoices_for(&partner.id), today)
        .await
        .map_err(|e| {
            let problem = diagnose::billing(&e, Service::PartnerCenter, version);
            let hint = problem
                .as_ref()
                .map(|p| format!("\nhint: {p}"))
                .unwrap_or_default();
            Fatal {
                status: if problem.is_some() {
                    ExitStatus::Usage
                } else {
                    ExitStatus::SomeFailed
                },
                error: anyhow::anyhow!("cannot list invoices in Partner Center: {e}{hint}"),
            }
        })?;
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
        exports: plan.requests.iter().map(ToString::to_string).collect(),
        graph: format!("{}{}", app.config.graph.base_url, version.segment()),
        credential: setup.graph_credential.clone(),
        output: locations.output.clone(),
        invoice_months: plan.discovered.map(|m| m.to_string()),
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
            plan.discovered
                .map(|m| format!("; invoices of {m} from Partner Center"))
                .unwrap_or_default()
        ));
    }
    if args.dry_run {
        dry_run(&app, &plan.requests, &mut progress).await;
        return Ok(ExitStatus::Completed);
    }
    if plan.requests.is_empty() {
        progress.note("nothing to export");
        return Ok(ExitStatus::Completed);
    }

    let driver = Driver::new(app.clone(), queue, usize::from(args.concurrency));
    let mut stop = Box::pin(shutdown_signal());
    let starts = futures::stream::iter(plan.requests.iter().cloned())
        .map(|req| {
            let app = app.clone();
            async move {
                let r = app.pipeline.start(req.clone(), Trigger::Cli).await;
                (req, r)
            }
        })
        .buffered(START_CONCURRENCY)
        .collect::<Vec<_>>();
    let started = tokio::select! {
        s = starts => s,
        _ = &mut stop => {
            progress.note("interrupted while starting exports; run the same command again to continue");
            return Ok(ExitStatus::Interrupted);
        }
    };
    for (req, outcome) in started {
        match outcome {
            Ok(StartOutcome::Started(run)) => progress.add_run(*run, Origin::Started),
            Ok(StartOutcome::Rejected(run)) => progress.add_run(*run, Origin::Rejected),
            Ok(StartOutcome::Duplicate(run)) => {
                if let Err(e) = driver.requeue(&run).await {
                    progress.not_started(label(&req), format!("cannot resume: {e}"));
                    continue;
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
                progress.not_started(label(&req), why);
            }
        }
    }
    let interrupted = driver.run(&mut progress, &mut stop).await;
    progress.finish();
    summary::print(&progress, &locations, version, interrupted);
    Ok(summary::exit_status(&progress, interrupted))
}

/// What a run would do: start, resume a run in progress, or export again.
async fn dry_run(app: &App, requests: &[ExportRequest], progress: &mut Progress) {
    let known: Vec<RunRecord> = app
        .pipeline
        .ledger()
        .list(100_000)
        .await
        .unwrap_or_default();
    for req in requests {
        // Newest first: the first match is the latest run of this export.
        let latest = known.iter().find(|r| &r.request == req);
        let what = match latest {
            None => "would start".to_string(),
            Some(r) if !r.state.is_terminal() => format!(
                "would resume run {} ({}, {}/{} parts done)",
                r.run_id,
                r.state.as_str(),
                r.parts_done(),
                r.parts.len()
            ),
            Some(r) => format!(
                "would export again (last run {} {}; unchanged partitions are not copied again)",
                r.run_id,
                r.state.as_str()
            ),
        };
        progress.emit(CliEvent::Planned {
            export: label(req),
            request: req.to_string(),
            action: what.clone(),
        });
        if progress.mode() != Mode::Json {
            progress.note(&format!("  {:<40} {what}", label(req)));
        }
    }
}
