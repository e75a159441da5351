//! Drives the local run: fires the start timers, then follows the runs through the status API
//! and the events until every run is finished and announced.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;

use super::RunLine;
use crate::eventgrid::EventGridEmulator;
use crate::host::FunctionsHost;
use crate::servicebus::ServiceBusEmulator;
use partner_billing_export::adapters::events::CloudEvent;
use partner_billing_export::billing::ExportScope;
use partner_billing_export::contracts::events::EventData;
use partner_billing_export::contracts::status::{RunBrief, RunList, RunView};

pub(super) struct Progress {
    pub quiet: bool,
    pub started: Instant,
    pub last: String,
}

impl Progress {
    pub fn say(&self, line: &str) {
        if !self.quiet {
            println!("[{:>6.1}s] {line}", self.started.elapsed().as_secs_f64());
        }
    }
    fn update(&mut self, line: String) {
        if line != self.last {
            self.say(&line);
            self.last = line;
        }
    }
}

fn short_type(t: &str) -> &str {
    t.strip_prefix("PartnerBillingExport.").unwrap_or(t)
}

/// A line about an event the Event Grid stand-in accepted.
fn describe_event(e: &Value) -> String {
    let Ok(ev) = serde_json::from_value::<CloudEvent>(e.clone()) else {
        return "event (not a CloudEvent)".to_string();
    };
    let t = short_type(&ev.event_type);
    let subject = &ev.subject;
    let or_null = |v: Option<String>| v.unwrap_or_else(|| "null".to_string());
    match ev.payload() {
        Ok(EventData::ExportCompleted(d)) => format!(
            "event {t} {subject}: {} files, {} bytes, {} rows",
            d.blob_count,
            d.byte_count,
            or_null(d.row_count.map(|n| n.to_string()))
        ),
        Ok(EventData::ExportFailed(d)) => format!(
            "event {t} {subject}: {} {}",
            or_null(d.code.map(|c| format!("{:?}", c.as_str()))),
            or_null(d.reason.map(|r| format!("{r:?}")))
        ),
        _ => format!("event {t} {subject}"),
    }
}

/// Whether an accepted event is a run's final one (`ExportCompleted` or `ExportFailed`).
fn is_final(e: &Value) -> bool {
    serde_json::from_value::<CloudEvent>(e.clone())
        .ok()
        .and_then(|ev| ev.payload().ok())
        .is_some_and(|p| {
            matches!(
                p,
                EventData::ExportCompleted(_) | EventData::ExportFailed(_)
            )
        })
}

/// Fires the timer and waits until every run is finished and announced, showing progress.
pub(super) async fn drive(
    host: &FunctionsHost,
    sb: &ServiceBusEmulator,
    eg: &EventGridEmulator,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
    progress: &mut Progress,
    timeout: Duration,
) -> anyhow::Result<Vec<RunLine>> {
    // Billed and unbilled exports have a timer each; local mode fires both at once.
    for timer in partner_billing_export::functions::START_TIMERS {
        let fired = host.fire_timer(timer.name).await?;
        for l in &fired.logs {
            progress.say(&format!("{}: {l}", timer.name));
        }
        if !fired.ok {
            bail!(
                "the {} timer invocation failed; see {}",
                timer.name,
                host.log_file().display()
            );
        }
    }
    let client = reqwest::Client::builder().no_proxy().build()?;
    let list_url = host.http_base().join("exports")?;
    let deadline = Instant::now() + timeout;
    loop {
        while let Ok(e) = events.try_recv() {
            progress.say(&describe_event(&e));
        }
        let list: RunList = client
            .get(list_url.clone())
            .header("x-functions-key", host.function_key())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let runs = list.runs;
        let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
        let (mut done_parts, mut total_parts) = (0, 0);
        for r in &runs {
            *by_state.entry(r.status.as_str()).or_default() += 1;
            done_parts += r.parts_done;
            total_parts += r.parts_total;
        }
        let states: Vec<String> = by_state.iter().map(|(k, v)| format!("{v} {k}")).collect();
        progress.update(format!(
            "{} runs: {} | partitions {done_parts}/{total_parts}",
            runs.len(),
            states.join(", ")
        ));
        let terminal = runs.iter().filter(|r| r.status.is_terminal()).count();
        let finals = eg.events().iter().filter(|e| is_final(e)).count();
        let idle = sb.depth().values().all(|d| *d == 0);
        if !runs.is_empty() && terminal == runs.len() && finals >= runs.len() && idle {
            while let Ok(e) = events.try_recv() {
                progress.say(&describe_event(&e));
            }
            return collect_runs(&client, host, &runs).await;
        }
        if Instant::now() > deadline {
            bail!(
                "runs did not finish within {timeout:?} ({}); see {}",
                states.join(", "),
                host.log_file().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each run's status, as the status API reports it.
async fn collect_runs(
    client: &reqwest::Client,
    host: &FunctionsHost,
    runs: &[RunBrief],
) -> anyhow::Result<Vec<RunLine>> {
    let mut out = Vec::new();
    for r in runs {
        let url = host.http_base().join(&format!("exports/{}", r.run_id))?;
        let v: RunView = client
            .get(url)
            .header("x-functions-key", host.function_key())
            .send()
            .await?
            .json()
            .await?;
        out.push(run_line(v));
    }
    out.sort_by(|a, b| a.subject.cmp(&b.subject));
    Ok(out)
}

fn run_line(v: RunView) -> RunLine {
    let partner = match v.partner.listed() {
        Some(p) => format!("{p}: "),
        None => String::new(),
    };
    let who = match &v.request.scope {
        ExportScope::Invoice { invoice_id } => invoice_id.to_string(),
        ExportScope::Period { period, currency } => format!("{} {currency}", period.as_str()),
    };
    let result = v.result.as_ref();
    RunLine {
        run_id: v.run_id.to_string(),
        subject: format!("{partner}{} {who}", v.request.kind.as_str()),
        status: if result.is_some_and(|r| r.no_data) {
            "no data".to_string()
        } else {
            v.status.as_str().to_string()
        },
        files: result.map_or(0, |r| r.blob_count as u64),
        bytes: result.map_or(0, |r| r.byte_count),
        rows: result.and_then(|r| r.row_count),
        reason: v
            .failure
            .as_ref()
            .and_then(|f| f.reason.clone())
            .or_else(|| result.and_then(|r| r.no_data_reason.clone())),
        manifest: result.and_then(|r| r.manifest.clone()),
    }
}
