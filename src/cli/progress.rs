//! Progress of `export`, from the run records in the ledger: one live line per export on a
//! terminal (state, polls, parts done / total, bytes, throughput, ETA), plain log lines when
//! stdout is not a terminal, or one JSON object per line with `--json`.

use std::io::Write;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::adapters::storage::CopyMethod;
use crate::billing::{ExportRequest, ExportScope};
use crate::contracts::cli::{CliEvent, CliFailure, CliLine};
use crate::pipeline::{RunId, RunRecord, RunState};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A block of live lines, redrawn in place (a terminal).
    Live,
    /// One log line per change (a pipe or a file).
    Plain,
    /// One JSON object per line.
    Json,
}

/// How a run came into this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Started now.
    Started,
    /// Already running in the ledger (an earlier, interrupted invocation): continued.
    Resumed,
    /// Graph refused to start it.
    Rejected,
    /// Exported by an earlier invocation: nothing to do (`--force` exports it again).
    Exported,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Started => "started",
            Origin::Resumed => "resumed",
            Origin::Rejected => "rejected",
            Origin::Exported => "already exported",
        }
    }
}

/// One export as this session sees it.
#[derive(Debug, Clone)]
pub struct RunView {
    pub record: RunRecord,
    pub origin: Origin,
    /// Parts already done when this session found the run.
    pub done_before: usize,
    /// Parts this session copied (bytes moved).
    pub copied: usize,
    /// Parts this session found already in place (same source identity): nothing copied.
    pub skipped: usize,
    bytes_now: u64,
    first_copy: Option<Instant>,
    last_copy: Option<Instant>,
    /// The driver stopped retrying this run's messages.
    pub gave_up: Option<String>,
    /// Where its `_manifest.json` is, once completed.
    pub manifest: Option<String>,
}

impl RunView {
    pub fn run_id(&self) -> &RunId {
        &self.record.run_id
    }

    /// `billedUsage G026100001` / `unbilledUsage current USD`.
    pub fn label(&self) -> String {
        label(&self.record.request)
    }

    /// Finished, or nothing more this process can do for it.
    pub fn settled(&self) -> bool {
        self.record.state.is_terminal() || self.gave_up.is_some()
    }

    /// Bytes per second over this session's copies.
    fn throughput(&self) -> Option<f64> {
        let (a, b) = (self.first_copy?, self.last_copy?);
        let secs = (b - a).as_secs_f64().max(0.2);
        (self.bytes_now > 0).then(|| self.bytes_now as f64 / secs)
    }

    fn eta(&self) -> Option<Duration> {
        let rate = self.throughput()?;
        let done = self.copied.max(1) as f64;
        let left = self
            .record
            .parts
            .len()
            .saturating_sub(self.record.parts_done()) as f64;
        Some(Duration::from_secs_f64(
            left * (self.bytes_now as f64 / done) / rate,
        ))
    }
}

pub fn label(r: &ExportRequest) -> String {
    match &r.scope {
        ExportScope::Invoice { invoice_id } => format!("{} {invoice_id}", r.kind),
        ExportScope::Period { period, currency } => format!("{} {period} {currency}", r.kind),
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Prints one JSON line of `--json` output.
pub fn print_line(line: &CliLine) {
    if let Ok(text) = serde_json::to_string(line) {
        println!("{text}");
    }
}

/// A run's failure as the JSON lines show it.
pub fn cli_failure(f: &crate::pipeline::Failure) -> CliFailure {
    CliFailure {
        code: f.code.as_str().to_string(),
        message: f.message.clone(),
    }
}

fn method_name(m: Option<CopyMethod>) -> &'static str {
    match m {
        Some(CopyMethod::Relay) => "relay",
        Some(CopyMethod::ServerSide) => "serverSide",
        Some(CopyMethod::Skipped) => "skipped",
        None => "unknown",
    }
}

pub struct Progress {
    mode: Mode,
    started: Instant,
    runs: Vec<RunView>,
    live_lines: usize,
    last_draw: Option<Instant>,
    /// Exports that could not be started at all: (export, why).
    unstarted: Vec<(String, String)>,
}

impl Progress {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            started: Instant::now(),
            runs: Vec::new(),
            live_lines: 0,
            last_draw: None,
            unstarted: Vec::new(),
        }
    }

    pub fn unstarted(&self) -> &[(String, String)] {
        &self.unstarted
    }

    /// An export whose start failed before any run was recorded.
    pub fn not_started(&mut self, export: String, reason: String) {
        self.emit(CliEvent::NotStarted {
            export: export.clone(),
            reason: reason.clone(),
        });
        if self.mode != Mode::Json {
            self.note(&format!("could not start {export}: {reason}"));
        }
        self.unstarted.push((export, reason));
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn runs(&self) -> &[RunView] {
        &self.runs
    }

    pub fn run_mut(&mut self, id: &RunId) -> Option<&mut RunView> {
        self.runs.iter_mut().find(|r| r.run_id() == id)
    }

    /// Writes a JSON progress event (in `--json` mode).
    pub fn emit(&mut self, event: CliEvent) {
        if self.mode == Mode::Json {
            let line = CliLine {
                event,
                elapsed: Some((self.elapsed().as_secs_f64() * 10.0).round() / 10.0),
            };
            print_line(&line);
        }
    }

    /// A line worth reading whatever the mode.
    pub fn note(&mut self, text: &str) {
        match self.mode {
            Mode::Json => self.emit(CliEvent::Note {
                message: text.to_string(),
            }),
            Mode::Plain => self.say(text),
            Mode::Live => {
                self.clear_live();
                println!("{text}");
                self.draw(true);
            }
        }
    }

    fn say(&self, text: &str) {
        println!("[{:>7.1}s] {text}", self.elapsed().as_secs_f64());
    }

    pub fn add_run(&mut self, record: RunRecord, origin: Origin) {
        if self.runs.iter().any(|r| r.run_id() == &record.run_id) {
            return;
        }
        let view = RunView {
            done_before: record.parts_done(),
            copied: 0,
            skipped: 0,
            bytes_now: 0,
            first_copy: None,
            last_copy: None,
            gave_up: None,
            manifest: None,
            origin,
            record,
        };
        let line = format!(
            "{} {} ({})",
            origin.as_str(),
            view.label(),
            view.record.run_id
        );
        let ev = CliEvent::Run {
            run_id: view.record.run_id.clone(),
            export: view.label(),
            outcome: origin.as_str().to_string(),
            state: view.record.state,
            parts_done: view.done_before,
            parts_total: view.record.parts.len(),
        };
        self.runs.push(view);
        match self.mode {
            Mode::Json => self.emit(ev),
            Mode::Plain => self.say(&line),
            Mode::Live => self.draw(true),
        }
        let last = self.runs.len() - 1;
        self.state_line(last, None);
    }

    /// Takes the latest record of a run and reports what changed.
    pub fn update(&mut self, record: RunRecord) {
        let Some(i) = self.runs.iter().position(|r| r.run_id() == &record.run_id) else {
            return;
        };
        let prev = std::mem::replace(&mut self.runs[i].record, record);
        let now = Instant::now();
        let newly: Vec<(u32, Option<CopyMethod>, u64)> = self.runs[i]
            .record
            .parts
            .iter()
            .filter(|p| p.done && !prev.parts.get(p.index as usize).is_some_and(|q| q.done))
            .map(|p| (p.index, p.method, p.bytes.unwrap_or(0)))
            .collect();
        for (part, method, bytes) in &newly {
            let v = &mut self.runs[i];
            if *method == Some(CopyMethod::Skipped) {
                v.skipped += 1;
            } else {
                v.copied += 1;
                v.bytes_now += bytes;
                v.first_copy.get_or_insert(now);
                v.last_copy = Some(now);
            }
            let ev = CliEvent::PartDone {
                run_id: v.record.run_id.clone(),
                export: v.label(),
                part: *part,
                method: method_name(*method).to_string(),
                bytes: *bytes,
                parts_done: v.record.parts_done(),
                parts_total: v.record.parts.len(),
            };
            self.emit(ev);
        }
        let changed = prev.state != self.runs[i].record.state
            || prev.polls != self.runs[i].record.polls
            || !newly.is_empty();
        if changed {
            self.state_line(i, Some(prev.state));
        }
    }

    pub fn give_up(&mut self, id: &RunId, reason: String) {
        let Some(i) = self.runs.iter().position(|r| r.run_id() == id) else {
            return;
        };
        let label = self.runs[i].label();
        self.runs[i].gave_up = Some(reason.clone());
        self.emit(CliEvent::GaveUp {
            run_id: id.clone(),
            export: label.clone(),
            reason: reason.clone(),
        });
        if self.mode != Mode::Json {
            self.note(&format!("{label}: giving up: {reason}"));
        }
    }

    fn state_line(&mut self, i: usize, prev: Option<RunState>) {
        let v = &self.runs[i];
        let r = &v.record;
        match self.mode {
            Mode::Json => {
                let ev = CliEvent::State {
                    run_id: r.run_id.clone(),
                    export: v.label(),
                    state: r.state,
                    polls: r.polls,
                    parts_done: r.parts_done(),
                    parts_total: r.parts.len(),
                    bytes: r.bytes_copied(),
                    failure: r.failure.as_ref().map(cli_failure),
                };
                if prev != Some(r.state) || r.state == RunState::Copying || prev.is_none() {
                    self.emit(ev);
                }
            }
            Mode::Plain => {
                let line = format!("{}: {}", v.label(), describe(v));
                self.say(&line);
            }
            Mode::Live => self.draw(false),
        }
    }

    /// Redraws the live block (at most 5 times a second unless `force`).
    pub fn draw(&mut self, force: bool) {
        if self.mode != Mode::Live {
            return;
        }
        if !force
            && self
                .last_draw
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let mut out = std::io::stdout().lock();
        if self.live_lines > 0 {
            let _ = write!(out, "\x1b[{}A", self.live_lines);
        }
        for v in &self.runs {
            let _ = writeln!(out, "\x1b[2K  {:<40} {}", v.label(), describe(v));
        }
        let _ = out.flush();
        self.live_lines = self.runs.len();
    }

    fn clear_live(&mut self) {
        if self.mode == Mode::Live && self.live_lines > 0 {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\x1b[{}A\x1b[J", self.live_lines);
            let _ = out.flush();
            self.live_lines = 0;
        }
    }

    /// Final redraw; the live block stays on screen above the closing table.
    pub fn finish(&mut self) {
        self.draw(true);
        self.live_lines = 0;
    }
}

/// `copying  poll 3  parts 2/3  154.2 KB  1.2 MB/s  ETA 2s`.
fn describe(v: &RunView) -> String {
    let r = &v.record;
    let mut s = format!("{:<9}", r.state.as_str());
    if let Some(why) = &v.gave_up {
        return format!("gave up: {why}");
    }
    match r.state {
        RunState::Starting => {}
        RunState::Polling => {
            s.push_str(&format!(" poll {}", r.polls));
            if let Some(at) = r.next_poll_at {
                let wait = (at - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
                s.push_str(&format!(
                    ", next in {}",
                    short_duration(Duration::from_secs(wait.whole_seconds() as u64))
                ));
            }
            if let Some(st) = &r.last_status {
                s.push_str(&format!(" ({st})"));
            }
        }
        RunState::Copying | RunState::Completed => {
            s.push_str(&format!(
                " parts {}/{}  {}",
                r.parts_done(),
                r.parts.len(),
                human_bytes(r.bytes_copied())
            ));
            if let Some(rate) = v.throughput() {
                s.push_str(&format!("  {}/s", human_bytes(rate as u64)));
            }
            if r.state == RunState::Copying {
                if let Some(eta) = v.eta() {
                    s.push_str(&format!("  ETA {}", short_duration(eta)));
                }
            }
        }
        RunState::Failed => {
            if let Some(f) = &r.failure {
                s.push_str(&format!(" {}: {}", f.code, f.message));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_durations_read_well() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 KB");
        assert_eq!(human_bytes(2_345_678), "2.3 MB");
        assert_eq!(short_duration(Duration::from_secs(75)), "1m15s");
        assert_eq!(short_duration(Duration::from_secs(7260)), "2h01m");
    }
}
