//! The status API's view of a run: progress while running, files and counts when done, the
//! reason when failed. Never includes a SAS or token (the ledger holds none).

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

use super::run::{RunRecord, RunState};
use crate::pipeline::ports::storage::Destination;

fn ts(t: time::OffsetDateTime) -> Value {
    t.format(&Rfc3339).map(Value::String).unwrap_or(Value::Null)
}

pub fn view(run: &RunRecord, dest: &dyn Destination) -> Value {
    let mut v = json!({
        "runId": run.run_id,
        "status": run.state.as_str(),
        "partner": run.request.partner,
        "request": run.request,
        "trigger": run.trigger,
        "createdAt": ts(run.created_at),
        "updatedAt": ts(run.updated_at),
        "progress": {
            "polls": run.polls,
            "restarts": run.restarts,
            "lastOperationStatus": run.last_status,
            "nextPollAt": run.next_poll_at.map(ts),
            "partsDone": run.parts_done(),
            "partsTotal": run.parts.len(),
            "bytesCopied": run.bytes_copied(),
        },
    });
    match run.state {
        RunState::Completed => {
            let folder = run.output_folder.as_ref().map(|f| dest.locate(f));
            let manifest = run
                .output_folder
                .as_ref()
                .and_then(|f| f.join(super::layout::RUN_MANIFEST_NAME).ok())
                .map(|p| dest.locate(&p));
            v["result"] = json!({
                "folder": folder,
                "manifest": manifest,
                "sourceETag": run.manifest.as_ref().map(|m| m.etag.clone()),
                "noData": run.no_data,
                "noDataReason": run.no_data_reason,
                "billingMonth": super::layout::run_billing_month(run),
                "blobCount": run.parts.len(),
                "byteCount": run.bytes_copied(),
                "rowCount": run.rows_copied(),
                "files": run.parts.iter().map(|p| json!({
                    "path": dest.locate(&p.dest),
                    "bytes": p.bytes,
                    "rows": p.rows,
                    "md5": p.md5,
                })).collect::<Vec<_>>(),
                "completedAt": run.finished_at.map(ts),
            });
        }
        RunState::Failed => {
            v["failure"] = json!({
                "code": run.failure.as_ref().map(|f| f.code.clone()),
                "reason": run.failure.as_ref().map(|f| f.message.clone()),
                "at": run.failure.as_ref().map(|f| ts(f.at)),
            });
        }
        _ => {}
    }
    v
}

/// A one-line summary for lists.
pub fn brief(run: &RunRecord) -> Value {
    json!({
        "runId": run.run_id,
        "status": run.state.as_str(),
        "partner": run.request.partner,
        "request": run.request,
        "createdAt": ts(run.created_at),
        "noData": run.no_data,
        "billingMonth": super::layout::run_billing_month(run),
        "partsDone": run.parts_done(),
        "partsTotal": run.parts.len(),
    })
}

/// `GET /api/exports` filters and paging.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListQuery {
    pub partner: Option<crate::billing::PartnerId>,
    pub kind: Option<crate::billing::ExportKind>,
    /// A run state, or `noData` (completed without data).
    pub state: Option<String>,
    /// `yyyyMM`.
    pub billing_month: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

/// Largest page of runs.
pub const MAX_PAGE: usize = 500;
/// Page size without `limit`.
pub const DEFAULT_PAGE: usize = 100;
const STATES: [&str; 6] = [
    "starting",
    "polling",
    "copying",
    "completed",
    "failed",
    "noData",
];

impl ListQuery {
    /// From the query string: `partner`, `kind`, `state`, `billingMonth` (`2026-10`), `limit`, `offset`.
    pub fn parse(
        q: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self, crate::billing::InvalidInput> {
        use crate::billing::InvalidInput;
        let mut out = ListQuery {
            limit: DEFAULT_PAGE,
            ..Default::default()
        };
        for (k, v) in q {
            match k.as_str() {
                "partner" => {
                    out.partner = Some(
                        v.parse()
                            .map_err(|e: InvalidInput| InvalidInput::new("partner", e.reason))?,
                    )
                }
                "kind" => {
                    out.kind = Some(
                        v.parse()
                            .map_err(|e: InvalidInput| InvalidInput::new("kind", e.reason))?,
                    )
                }
                "state" | "status" => {
                    let s = STATES
                        .iter()
                        .find(|s| s.eq_ignore_ascii_case(v))
                        .ok_or_else(|| {
                            InvalidInput::new(
                                "state",
                                format!("{v:?}: expected one of {}", STATES.join(", ")),
                            )
                        })?;
                    out.state = Some((*s).to_string());
                }
                "billingMonth" => {
                    let m: crate::billing::BillingMonth = v
                        .parse()
                        .map_err(|e: String| InvalidInput::new("billingMonth", e))?;
                    out.billing_month = Some(m.compact());
                }
                "limit" => {
                    out.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            InvalidInput::new("limit", format!("expected 1 to {MAX_PAGE}"))
                        })?
                }
                "offset" => {
                    out.offset = v
                        .parse()
                        .map_err(|_| InvalidInput::new("offset", "expected a whole number"))?
                }
                // The Functions host adds `code` (the function key) to the query.
                _ => {}
            }
        }
        Ok(out)
    }

    pub fn matches(&self, run: &RunRecord) -> bool {
        let state_ok = match self.state.as_deref() {
            None => true,
            Some("noData") => run.state == RunState::Completed && run.no_data,
            Some(s) => run.state.as_str() == s,
        };
        state_ok
            && self
                .partner
                .as_ref()
                .is_none_or(|p| &run.request.partner == p)
            && self.kind.is_none_or(|k| run.request.kind == k)
            && self.billing_month.as_ref().is_none_or(|m| {
                super::layout::run_billing_month(run).as_deref() == Some(m.as_str())
            })
    }

    /// The page of `runs` (newest first) this query selects, the number that matched, and the
    /// query string of the next page, if any.
    pub fn page(&self, runs: &[RunRecord]) -> (Vec<Value>, usize, Option<String>) {
        let matching: Vec<&RunRecord> = runs.iter().filter(|r| self.matches(r)).collect();
        let total = matching.len();
        let page: Vec<Value> = matching
            .iter()
            .skip(self.offset)
            .take(self.limit)
            .map(|r| brief(r))
            .collect();
        let next = (self.offset + page.len() < total).then(|| {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            if let Some(p) = &self.partner {
                q.append_pair("partner", p.as_str());
            }
            if let Some(k) = self.kind {
                q.append_pair("kind", k.as_str());
            }
            if let Some(s) = &self.state {
                q.append_pair("state", s);
            }
            if let Some(m) = &self.billing_month {
                q.append_pair("billingMonth", m);
            }
            q.append_pair("limit", &self.limit.to_string());
            q.append_pair("offset", &(self.offset + page.len()).to_string());
            q.finish()
        });
        (page, total, next)
    }
}
