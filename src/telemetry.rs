//! Logging set-up shared by every entry point.
//!
//! The custom handler (`serve`) writes INFO, DEBUG and TRACE lines to stdout and WARN and ERROR
//! lines to stderr, because the Functions host assigns severity by stream: stdout lines are
//! Information, and a stderr line is a Warning if its text contains "warn", otherwise an Error
//! (custom handlers set `UseStdErrorStreamForErrorsOnly`; other workers look for "error",
//! "fail" or "severe" and call the rest Information). Azure/azure-functions-host:
//! `WorkerProcess.ParseErrorMessageAndLog` in
//! `src/WebJobs.Script/Workers/ProcessManagement/WorkerProcess.cs`, and
//! `src/WebJobs.Script/Workers/Http/HttpWorkerDescription.cs`. Every line on stderr would make
//! an INFO line an Error in Application Insights.
//!
//! The CLI keeps everything on stderr: its stdout is progress text or, with `--json`, JSON
//! lines a program reads.
//!
//! Colour codes are written only when the stream is a terminal: the host captures the
//! handler's output into files and Application Insights, where escape sequences would only
//! garble the text.

use std::io::IsTerminal;

use tracing::Level;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStreams {
    /// Every line on stderr (the CLI, whose stdout is its output).
    Stderr,
    /// INFO and more verbose on stdout, WARN and ERROR on stderr (the custom handler).
    BySeverity,
}

/// One of the two standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl LogStreams {
    /// The stream a line of `level` goes to.
    pub fn stream_for(self, level: &Level) -> Stream {
        match self {
            LogStreams::Stderr => Stream::Stderr,
            // `Level` orders by verbosity: WARN and ERROR are the levels at or below WARN.
            LogStreams::BySeverity if *level <= Level::WARN => Stream::Stderr,
            LogStreams::BySeverity => Stream::Stdout,
        }
    }
}

/// Installs the global `tracing` subscriber with every line on stderr (the CLI): JSON lines
/// (`json`) or plain text; `RUST_LOG` overrides `default_level`. Warnings and errors of an
/// invocation are also returned in its `Logs` ([`functions_runtime::logs`]).
pub fn init_tracing(json: bool, default_level: &str) {
    init_tracing_to(LogStreams::Stderr, json, default_level);
}

/// As [`init_tracing`], for the custom handler: lines split over stdout and stderr by
/// severity (see the module docs).
pub fn init_handler_tracing(json: bool, default_level: &str) {
    init_tracing_to(LogStreams::BySeverity, json, default_level);
}

/// Installs the global subscriber writing to `streams`. A second call (tests, embedding)
/// keeps the first subscriber.
pub fn init_tracing_to(streams: LogStreams, json: bool, default_level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(functions_runtime::logs::CaptureWarnings)
        .with(vec![
            stream_layer(streams, Stream::Stdout, json),
            stream_layer(streams, Stream::Stderr, json),
        ])
        .try_init();
}

/// The formatting layer of one stream: only the levels `streams` sends there, coloured only
/// when that stream is a terminal.
fn stream_layer<S>(
    streams: LogStreams,
    stream: Stream,
    json: bool,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::Layer;

    fn format<S, W>(writer: W, json: bool, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi);
        if json {
            layer.json().with_current_span(false).boxed()
        } else {
            layer.with_target(false).boxed()
        }
    }
    let layer = match stream {
        Stream::Stdout => format(std::io::stdout, json, std::io::stdout().is_terminal()),
        Stream::Stderr => format(std::io::stderr, json, std::io::stderr().is_terminal()),
    };
    // Spans pass to both layers, so a line on either stream carries its span's fields.
    layer
        .with_filter(tracing_subscriber::filter::filter_fn(move |meta| {
            meta.is_span() || streams.stream_for(meta.level()) == stream
        }))
        .boxed()
}

/// Resolves on SIGTERM (how the Functions host stops the handler) or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_splits_by_severity_and_the_cli_keeps_stderr() {
        let split = LogStreams::BySeverity;
        for level in [Level::TRACE, Level::DEBUG, Level::INFO] {
            assert_eq!(split.stream_for(&level), Stream::Stdout, "{level}");
        }
        for level in [Level::WARN, Level::ERROR] {
            assert_eq!(split.stream_for(&level), Stream::Stderr, "{level}");
        }
        for level in [Level::TRACE, Level::INFO, Level::WARN, Level::ERROR] {
            assert_eq!(
                LogStreams::Stderr.stream_for(&level),
                Stream::Stderr,
                "{level}"
            );
        }
    }
}
