//! The invariants a seed must hold, checked once it ends. Each has a `Break` that violates it
//! on purpose (`breaks.rs`), so a check that can no longer fail is noticed.

use std::time::Duration;

use md5::{Digest, Md5};
use partner_billing_export::pipeline::ports::events::CloudEvent;
use partner_billing_export::pipeline::{FailureCode, RunRecord, RunState};
use partner_billing_local::graph_sandbox::GraphSandbox;
use time::OffsetDateTime;

use super::Sim;

/// Publications of one run's final event (counted before consumers drop duplicates by id):
/// each is a retry after a lost answer or a lost "sent" record, so a few, never many.
pub const MAX_FINAL_PUBLICATIONS: usize = 6;

/// What the checks need to know about the seed besides the world's state.
pub(crate) struct Seed<'a> {
    pub sandbox: &'a GraphSandbox,
    /// Graph answers to export POSTs the proxy dropped.
    pub lost_posts: usize,
    /// When the faults stopped.
    pub calm_since: OffsetDateTime,
    /// The documented bound on a run's life: poll deadline + stall period × (repairs + 1) +
    /// one watchdog period.
    pub bound: Duration,
    /// Whether any fault was injected at all.
    pub faulty: bool,
    /// Whether Graph expired operations (410 Gone) on this seed.
    pub gone: bool,
    /// Whether runs land typed Parquet and FOCUS files with each partition.
    pub parquet: bool,
    /// How long after the faults stop a run may still fail as stalled: the stall period plus
    /// one watchdog period.
    pub stall_grace: Duration,
}

/// A completed part's typed Parquet and FOCUS files are both there, and not empty.
fn check_derived(
    r: &RunRecord,
    folder: &partner_billing_export::pipeline::ports::storage::ObjectPath,
    p: &partner_billing_export::pipeline::run::PartRecord,
    objects: &std::collections::HashMap<String, bytes::Bytes>,
    v: &mut Vec<String>,
) {
    let Ok((typed, focus)) = partner_billing_export::pipeline::derived::derived_paths(folder, p)
    else {
        v.push(format!(
            "run {} part {}: no derived paths",
            r.run_id, p.index
        ));
        return;
    };
    for file in [typed, focus] {
        if objects.get(file.as_str()).is_none_or(|b| b.is_empty()) {
            v.push(format!(
                "run {} part {}: derived file missing at {file}",
                r.run_id, p.index
            ));
        }
    }
}

pub(crate) async fn check(sim: &Sim, seed: &Seed<'_>) -> Vec<String> {
    let mut v = Vec::new();
    let runs = sim.runs().await;
    let events = sim.events.accepted.lock().unwrap().clone();
    // Every request has a run; every run is terminal.
    for req in &sim.requests {
        if !runs.iter().any(|r| r.request.key() == req.key()) {
            v.push(format!("request {req} never got a run"));
        }
    }
    for r in &runs {
        if !r.state.is_terminal() {
            v.push(format!("run {} stuck in {:?}", r.run_id, r.state));
        }
    }
    check_final_events(&runs, &events, &mut v);
    check_one_run_at_a_time(&runs, &mut v);
    check_time_bound(&runs, seed, &mut v);
    check_failures(&runs, seed, &mut v);
    check_output(sim, seed, &runs, &mut v);
    check_no_secret(sim, &events, &mut v);
    check_hubs(sim, &runs, &mut v);
    // The watchdog sees every run that may need it: checked at each write of the index.
    v.extend(sim.store.index_violations.lock().unwrap().iter().cloned());
    v
}

/// One run per request at a time: no run of an export starts while another is open, however
/// the starts interleave.
fn check_one_run_at_a_time(runs: &[RunRecord], v: &mut Vec<String>) {
    let mut by_request: std::collections::BTreeMap<String, Vec<&RunRecord>> = Default::default();
    for r in runs {
        let key = r.request.ledger_key(r.created_at.date());
        by_request.entry(key).or_default().push(r);
    }
    for (key, mut rs) in by_request {
        rs.sort_by_key(|r| (r.created_at, r.run_id.clone()));
        for pair in rs.windows(2) {
            let still_open = pair[0]
                .finished_at
                .is_none_or(|done| pair[1].created_at < done);
            if still_open {
                v.push(format!(
                    "runs {} and {} of {key} were open at once",
                    pair[0].run_id, pair[1].run_id
                ));
            }
        }
    }
}

/// Every run terminal within the documented bound, in simulated time.
fn check_time_bound(runs: &[RunRecord], seed: &Seed<'_>, v: &mut Vec<String>) {
    for r in runs {
        let Some(done) = r.finished_at else { continue };
        if done - r.created_at > seed.bound {
            v.push(format!(
                "run {} took {} min, beyond the bound of {} min",
                r.run_id,
                (done - r.created_at).whole_minutes(),
                seed.bound.as_secs() / 60
            ));
        }
    }
}

/// Every failed run is explained by a fault it could not outlast: it failed while faults were
/// on, with a code those faults can cause; a seed without faults completes every run.
fn check_failures(runs: &[RunRecord], seed: &Seed<'_>, v: &mut Vec<String>) {
    for r in runs.iter().filter(|r| r.state == RunState::Failed) {
        let Some(f) = &r.failure else {
            v.push(format!("run {} failed without a reason", r.run_id));
            continue;
        };
        let explained = match &f.code {
            FailureCode::Gone => seed.gone,
            FailureCode::CopyFailed | FailureCode::LandingFailed | FailureCode::Stalled => true,
            _ => false,
        };
        // A stall is judged on the time before it: a run whose repairs all fell in the storm
        // is failed by the first watchdog pass a stall period later.
        let grace = match f.code {
            FailureCode::Stalled => seed.stall_grace,
            _ => Duration::ZERO,
        };
        // Expiring operations are the seed's, not the storm's: they go on after it.
        let any_time = matches!(f.code, FailureCode::Gone);
        let in_time = any_time || f.at <= seed.calm_since + grace;
        if !(seed.faulty || any_time) || !in_time || !explained {
            v.push(format!(
                "run {} failed ({}: {}) without a fault that explains it",
                r.run_id, f.code, f.message
            ));
        }
    }
}

/// Exactly one final event id per run, of the kind its state says.
fn check_final_events(runs: &[RunRecord], events: &[CloudEvent], v: &mut Vec<String>) {
    for r in runs {
        let mut finals: Vec<(&str, &str)> = events
            .iter()
            .filter(|e| e.data.get("runId").and_then(|x| x.as_str()) == Some(r.run_id.as_str()))
            .filter_map(|e| {
                let kind = if e.event_type.ends_with("ExportCompleted.v1") {
                    "completed"
                } else if e.event_type.ends_with("ExportFailed.v1") {
                    "failed"
                } else {
                    return None;
                };
                Some((kind, e.id.as_str()))
            })
            .collect();
        if finals.len() > MAX_FINAL_PUBLICATIONS {
            v.push(format!(
                "run {} published its final event {} times",
                r.run_id,
                finals.len()
            ));
        }
        finals.sort_unstable();
        finals.dedup();
        let want = match r.state {
            RunState::Completed => "completed",
            RunState::Failed => "failed",
            _ => continue,
        };
        if finals.len() != 1 || finals[0].0 != want {
            v.push(format!(
                "run {} ({want}) has final events {finals:?}",
                r.run_id
            ));
        }
    }
}

/// What landed: `_current.json` per export, every partition of a completed run once and
/// byte-identical, and no export started more often than its runs explain.
fn check_output(sim: &Sim, seed: &Seed<'_>, runs: &[RunRecord], v: &mut Vec<String>) {
    let (sandbox, lost_posts) = (seed.sandbox, seed.lost_posts);
    // Each export's `_current.json` names its newest completed run, whatever order runs
    // finished in and whatever writes failed on the way.
    let mut newest: std::collections::BTreeMap<String, &RunRecord> = Default::default();
    for r in runs.iter().filter(|r| r.state == RunState::Completed) {
        let Some(p) =
            partner_billing_export::pipeline::current::CurrentPointer::for_run(r, r.updated_at)
        else {
            continue;
        };
        let slot = newest.entry(p.export_folder.to_string()).or_insert(r);
        if (r.created_at, &r.run_id) > (slot.created_at, &slot.run_id) {
            *slot = r;
        }
    }
    {
        let objects = sim.dest.objects.lock().unwrap();
        for (export, want) in &newest {
            let named = objects
                .get(&format!("{export}/_current.json"))
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v["runId"].as_str().map(str::to_string));
            if named.as_deref() != Some(want.run_id.as_str()) {
                v.push(format!(
                    "{export}/_current.json names {named:?}, not the newest completed run {}",
                    want.run_id
                ));
            }
        }
    }
    // Completed runs: every partition present once, byte-identical to what Graph served.
    let served = sandbox.served_partitions();
    let objects = sim.dest.objects.lock().unwrap().clone();
    for r in runs.iter().filter(|r| r.state == RunState::Completed) {
        let Some(folder) = &r.output_folder else {
            v.push(format!("run {} completed without a folder", r.run_id));
            continue;
        };
        // A version that is no longer current carries a `_superseded.json` marker besides;
        // derived formats live in sub-folders (checked below).
        let in_folder = objects
            .keys()
            .filter_map(|k| k.strip_prefix(&format!("{folder}/")))
            .filter(|rest| !rest.contains('/') && *rest != "_superseded.json")
            .count();
        if in_folder != r.parts.len() + 1 {
            v.push(format!(
                "run {}: {in_folder} objects in its folder for {} parts and a manifest",
                r.run_id,
                r.parts.len()
            ));
        }
        for p in &r.parts {
            if seed.parquet {
                check_derived(r, folder, p, &objects, v);
            }
            let Some(bytes) = objects.get(p.dest.as_str()) else {
                v.push(format!(
                    "run {} part {} missing at {}",
                    r.run_id, p.index, p.dest
                ));
                continue;
            };
            let md5 = format!("{:x}", Md5::digest(bytes));
            if !served.iter().any(|s| s.name == p.name && s.md5 == md5) {
                v.push(format!(
                    "run {} part {} differs from the source",
                    r.run_id, p.index
                ));
            }
        }
    }
    // Graph never exports without a recorded submission: each POST of a start or restart is
    // preceded by a ledger write counting it (plus the restarts whose answer Graph lost, which
    // are given back as not started: nobody can know about those).
    let exports = sandbox.stats().exports_started as usize;
    let submissions: usize = runs.iter().map(|r| r.submissions as usize).sum();
    let restarts: usize = runs.iter().map(|r| r.restarts as usize).sum();
    if exports > submissions + restarts + lost_posts {
        v.push(format!(
            "Graph started {exports} exports for {} runs ({submissions} submissions, {restarts} restarts, {lost_posts} lost answers)",
            runs.len()
        ));
    }
}

/// No secret in a message, a ledger record or an event.
fn check_no_secret(sim: &Sim, events: &[CloudEvent], v: &mut Vec<String>) {
    let mut texts: Vec<String> = sim
        .queue
        .sent_bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    texts.extend(
        sim.store
            .docs
            .lock()
            .unwrap()
            .values()
            .map(|(b, _)| String::from_utf8_lossy(b).into_owned()),
    );
    texts.extend(events.iter().map(|e| e.data.to_string()));
    for t in &texts {
        if t.contains("sig=")
            || t.contains("local-graph-token")
            || t.contains("local-storage-token")
        {
            v.push("a secret reached a message, record or event".into());
            break;
        }
    }
}

/// FinOps hubs ingests every `.parquet` file of a folder once its `manifest.json` is there, so
/// a folder with a manifest must hold exactly the files it lists, all of its ingestion id; and
/// once calm has let every follow-up finish, no folder holds data without a manifest unless a
/// follow-up gave up under the storm's faults.
fn check_hubs(sim: &Sim, runs: &[RunRecord], v: &mut Vec<String>) {
    let Some(hubs) = &sim.hubs else { return };
    let objects = hubs.objects.lock().unwrap().clone();
    let mut folders: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for k in objects.keys() {
        if let Some((folder, name)) = k.rsplit_once('/') {
            folders.entry(folder).or_default().push(name);
        }
    }
    let gave_up = runs.iter().any(|r| {
        r.follow_up.as_ref().is_some_and(|f| {
            f.state == partner_billing_export::pipeline::run::FollowUpState::GaveUp
        })
    });
    for (folder, names) in folders {
        let parquet: std::collections::BTreeSet<&str> = names
            .iter()
            .copied()
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        let Some(body) = objects.get(&format!("{folder}/manifest.json")) else {
            if !parquet.is_empty() && !gave_up {
                v.push(format!(
                    "hubs folder {folder} holds data but no manifest after calm"
                ));
            }
            continue;
        };
        let manifest: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let id = manifest["ingestionId"].as_str().unwrap_or_default();
        let listed: std::collections::BTreeSet<&str> = manifest["files"]
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for extra in parquet.difference(&listed) {
            v.push(format!(
                "hubs folder {folder} holds {extra}, which its manifest does not list"
            ));
        }
        for missing in listed.difference(&parquet) {
            v.push(format!(
                "hubs folder {folder} lacks {missing}, which its manifest lists"
            ));
        }
        if let Some(odd) = parquet.iter().find(|n| !n.starts_with(&format!("{id}__"))) {
            v.push(format!(
                "hubs folder {folder} mixes ingestion ids ({odd} beside {id})"
            ));
        }
    }
}
