//! An [`EventPublisher`] that appends each CloudEvent as one JSON line to a file (the `export`
//! command keeps its events beside the data it lands). Events carry no SAS or token.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;

use super::events::{CloudEvent, EventError, EventPublisher};

#[derive(Debug)]
pub struct JsonLinesEventFile {
    path: PathBuf,
    /// Serialises appends from concurrent invocations.
    lock: Mutex<()>,
}

impl JsonLinesEventFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl EventPublisher for JsonLinesEventFile {
    async fn publish(&self, events: &[CloudEvent]) -> Result<(), EventError> {
        let mut lines = Vec::new();
        for e in events {
            serde_json::to_writer(&mut lines, e).map_err(|e| EventError::Rejected {
                status: 0,
                detail: format!("cannot encode the event: {e}"),
            })?;
            lines.push(b'\n');
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(&lines));
        written.map_err(|e| EventError::Rejected {
            status: 0,
            detail: format!("cannot append to {}: {e}", self.path.display()),
        })?;
        for e in events {
            tracing::debug!(event_type = %e.event_type, subject = %e.subject, "event recorded");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_one_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let f = JsonLinesEventFile::new(dir.path().join("events.jsonl"));
        let ev = |id: &str| {
            CloudEvent::new(
                "/test",
                crate::contracts::EventType::ExportStarted.as_str(),
                id.into(),
                "s".into(),
                serde_json::json!({}),
            )
        };
        f.publish(&[ev("1")]).await.unwrap();
        f.publish(&[ev("2"), ev("3")]).await.unwrap();
        let text = std::fs::read_to_string(f.path()).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<CloudEvent>(l).unwrap().id)
            .collect();
        assert_eq!(ids, ["1", "2", "3"]);
    }
}
