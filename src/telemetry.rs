//! Logging set-up shared by every entry point.
//!
//! Logs go to stderr. Colour codes are written only when stderr is a terminal: the Functions
//! host captures the handler's output into files and Application Insights, where escape
//! sequences would only garble the text.

use std::io::IsTerminal;

/// Installs the global `tracing` subscriber: JSON lines (`json`, for Application Insights) or
/// plain text; `RUST_LOG` overrides `default_level`.
pub fn init_tracing(json: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // `try_init`: a second call (tests, embedding) keeps the first subscriber.
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.with_target(false).try_init()
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
