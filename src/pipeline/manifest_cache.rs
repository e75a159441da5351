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
    fetched_at: OffsetDateTime,
}

/// A manifest fetched this recently is used even when its SAS is inside the expiry margin:
/// Graph would hand out the same short-lived SAS again, so a copy arriving just after a
/// refresh shares it instead of refreshing once more.
const JUST_FETCHED: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct ManifestCache {
    entries: Mutex<HashMap<RunId, Entry>>,
    /// One refresh per run at a time in this instance: the copies of a run that all find the
    /// SAS expired wait for one Graph call instead of each making their own.
    refreshing: Mutex<HashMap<RunId, Arc<tokio::sync::Mutex<()>>>>,
}

impl ManifestCache {
    /// The run's manifest, if one is cached whose SAS is still good at `now` and which is not
    /// `refused` (the one whose SAS the source just turned down).
    pub fn fresh(
        &self,
        id: &RunId,
        now: OffsetDateTime,
        refused: Option<&Arc<Manifest>>,
    ) -> Option<Arc<Manifest>> {
        let entries = self.entries.lock().expect("manifest cache lock");
        entries
            .get(id)
            .filter(|e| e.good_until > now || now - e.fetched_at < JUST_FETCHED)
            .filter(|e| refused.is_none_or(|r| !Arc::ptr_eq(r, &e.manifest)))
            .map(|e| e.manifest.clone())
    }

    /// The run's cached manifest, however old.
    pub fn current(&self, id: &RunId) -> Option<Arc<Manifest>> {
        let entries = self.entries.lock().expect("manifest cache lock");
        entries.get(id).map(|e| e.manifest.clone())
    }

    /// The lock a refresh of `id`'s manifest holds (see `refreshing`).
    pub fn refresh_lock(&self, id: &RunId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.refreshing.lock().expect("manifest cache lock");
        if locks.len() > SWEEP_ABOVE {
            // Only locks nobody holds or waits for.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(id.clone()).or_default().clone()
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
                fetched_at: now,
            },
        );
    }

    pub fn forget(&self, id: &RunId) {
        self.entries.lock().expect("manifest cache lock").remove(id);
        self.refreshing
            .lock()
            .expect("manifest cache lock")
            .remove(id);
    }
}
