//! Manifests (with their SAS) kept per run in this instance's memory, so the copies of one run
//! do not each ask Graph for the operation again (shared, not cloned: a manifest can list
//! thousands of blobs). Never persisted: a SAS stays in memory only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::run::RunId;
use crate::billing::Manifest;

/// Entries beyond this trigger a sweep of expired ones.
const SWEEP_ABOVE: usize = 512;
/// A SAS is used until this long before its `se`...
const EXPIRY_MARGIN: Duration = Duration::from_secs(120);
/// ...and, without an `se`, for this long.
const WITHOUT_EXPIRY: Duration = Duration::from_secs(300);

struct Entry {
    manifest: Arc<Manifest>,
    good_until: OffsetDateTime,
}

#[derive(Default)]
pub struct ManifestCache {
    entries: Mutex<HashMap<RunId, Entry>>,
}

impl ManifestCache {
    /// The run's manifest, if one is cached whose SAS is still good at `now`.
    pub fn fresh(&self, id: &RunId, now: OffsetDateTime) -> Option<Arc<Manifest>> {
        let entries = self.entries.lock().expect("manifest cache lock");
        entries
            .get(id)
            .filter(|e| e.good_until > now)
            .map(|e| e.manifest.clone())
    }

    pub fn insert(&self, id: &RunId, manifest: Arc<Manifest>, now: OffsetDateTime) {
        let good_until = manifest
            .sas_expiry()
            .map(|e| e - EXPIRY_MARGIN)
            .unwrap_or_else(|| now + WITHOUT_EXPIRY);
        let mut entries = self.entries.lock().expect("manifest cache lock");
        if entries.len() > SWEEP_ABOVE {
            entries.retain(|_, e| e.good_until > now);
        }
        entries.insert(
            id.clone(),
            Entry {
                manifest,
                good_until,
            },
        );
    }

    pub fn forget(&self, id: &RunId) {
        self.entries.lock().expect("manifest cache lock").remove(id);
    }
}
