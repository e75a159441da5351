//! Logging set-up shared by every entry point.
//!
//! Logs go to stderr. Colour codes are written only when stderr is a terminal: the Functions
//! host captures the handler's output into files and Application Insights, where escape
//! sequences would only garble the text.

use std::io::IsTerminal;

/// Installs the global `tracing` subscriber: JSON lines (`json`, for Application Insights) or
/// plain text; `RUST_LOG` overrides `default_level`. Warnings and errors of an invocation are
/// also returned in its `Logs` ([`functions_runtime::logs`]).
pub fn init_tracing(json: bool, default_level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(functions_runtime::logs::CaptureWarnings);
    // `try_init`: a second call (tests, embedding) keeps the first subscriber.
    let _ = if json {
        registry
            .with(fmt.json().with_current_span(false))
            .try_init()
    } else {
        registry.with(fmt.with_target(false)).try_init()
    };
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
