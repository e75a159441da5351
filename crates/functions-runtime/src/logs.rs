//! Warnings and errors of an invocation travel back to the host in the reply's `Logs`, besides
//! going to stdout/stderr.
//!
//! Why: the Functions host forwards a custom handler's console output to Application Insights
//! only as sampled, loosely categorised console logs, while the `Logs` array of the invocation
//! response is the documented channel, recorded against the invocation
//! (learn.microsoft.com/azure/azure-functions/functions-custom-handlers, "Response payload").
//! So an operator looking at a failed or degraded invocation sees why, whatever the console
//! capture does.
//!
//! [`CaptureWarnings`] is a `tracing` layer; the server runs each handler inside [`capture`],
//! which collects the WARN and ERROR events the handler emits (bounded in count and length).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// At most this many lines per invocation; one more line says how many were dropped.
pub const MAX_CAPTURED_LINES: usize = 50;
/// Each line is cut to this many characters.
pub const MAX_LINE_CHARS: usize = 1000;

tokio::task_local! {
    static CAPTURED: RefCell<Captured>;
}

#[derive(Default)]
struct Captured {
    lines: Vec<String>,
    dropped: usize,
}

/// Runs `fut`, returning its output and the WARN/ERROR lines it logged (when the subscriber
/// has [`CaptureWarnings`]).
pub async fn capture<F: Future>(fut: F) -> (F::Output, Vec<String>) {
    CAPTURED
        .scope(RefCell::new(Captured::default()), async {
            let out = fut.await;
            let c = CAPTURED.with(|c| c.take());
            let mut lines = c.lines;
            if c.dropped > 0 {
                lines.push(format!(
                    "({} more warning or error lines not shown)",
                    c.dropped
                ));
            }
            (out, lines)
        })
        .await
}

/// The `tracing` layer that feeds [`capture`]. Add it to the process's subscriber.
#[derive(Debug, Clone, Copy, Default)]
pub struct CaptureWarnings;

impl<S: Subscriber> Layer<S> for CaptureWarnings {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let _ = CAPTURED.try_with(|c| {
            let mut c = c.borrow_mut();
            if c.lines.len() >= MAX_CAPTURED_LINES {
                c.dropped += 1;
                return;
            }
            let mut line = Line {
                text: format!("{level}:"),
            };
            event.record(&mut line);
            let text: String = line.text.chars().take(MAX_LINE_CHARS).collect();
            c.lines.push(text);
        });
    }
}

struct Line {
    text: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.text, " {value}");
        } else {
            let _ = write!(self.text, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.text, " {value:?}");
        } else {
            let _ = write!(self.text, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[tokio::test]
    async fn warnings_and_errors_are_captured_per_invocation() {
        let subscriber = tracing_subscriber::registry().with(CaptureWarnings);
        let _guard = tracing::subscriber::set_default(subscriber);
        let ((), lines) = capture(async {
            tracing::info!("not captured");
            tracing::warn!(run_id = "r1", "slow");
            tracing::error!(code = 5000, "export run failed");
        })
        .await;
        assert_eq!(
            lines,
            vec!["WARN: slow run_id=r1", "ERROR: export run failed code=5000"]
        );
        // Outside an invocation nothing is kept.
        tracing::error!("outside");
        let ((), again) = capture(async {}).await;
        assert!(again.is_empty());
    }

    #[tokio::test]
    async fn capture_is_bounded() {
        let subscriber = tracing_subscriber::registry().with(CaptureWarnings);
        let _guard = tracing::subscriber::set_default(subscriber);
        let ((), lines) = capture(async {
            for i in 0..(MAX_CAPTURED_LINES + 7) {
                tracing::warn!("line {i} {}", "x".repeat(3000));
            }
        })
        .await;
        assert_eq!(lines.len(), MAX_CAPTURED_LINES + 1);
        assert!(lines.iter().all(|l| l.chars().count() <= MAX_LINE_CHARS));
        assert_eq!(
            lines.last().unwrap(),
            "(7 more warning or error lines not shown)"
        );
    }
}
