//! `Plan` (HTTP `GET /api/plan`): what the next firings of both start timers would start,
//! without starting anything. `Backfill` (HTTP `POST /api/backfill`): plans a range of billing
//! months, starts what the ledger lacks, and answers with the plan and what it skipped and why.
//! Both decode the request, call the use case and render its report.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::app::App;
use crate::billing::{BillingMonth, ExportKind, InvalidInput, PartnerId};
use crate::pipeline::StartOutcome;
use crate::planner::{self, KindGroup, Plan};
use crate::usecases::backfill::{self, BackfillReport, BackfillRequest};
use crate::usecases::plans::{known_partner, timer_plans};
use functions_runtime::{HttpRequestData, HttpResponse};

fn plan_json(plan: &Plan) -> Value {
    let mut v = plan_json_of(plan);
    if let Some(p) = plan.partner.listed() {
        v["partner"] = json!(p);
    }
    v
}

fn plan_json_of(plan: &Plan) -> Value {
    json!({
        "start": plan.requests.iter().map(planner::describe).collect::<Vec<_>>(),
        "skipped": plan.skipped,
        "notes": plan.notes,
        "invoicesMissing": plan.invoices_missing.as_ref().map(|m| json!({
            "billingMonth": m.month,
            "expectedBy": m.expected_by.to_string(),
        })),
        "discoveryFailure": plan.discovery_failure.as_ref().map(|f| json!({
            "billingMonth": f.month,
            "reason": f.error.to_string(),
            "fix": f.hint(),
        })),
    })
}

/// `GET /api/plan[?group=billed|unbilled]`.
pub async fn plan(app: &App, req: HttpRequestData, now: OffsetDateTime) -> HttpResponse {
    if req.method != "GET" {
        return HttpResponse::problem(405, "Method not allowed", "use GET /api/plan", None);
    }
    let groups = match req.query.get("group").map(|g| g.to_ascii_lowercase()) {
        None => vec![KindGroup::Billed, KindGroup::Unbilled],
        Some(g) if g == "billed" => vec![KindGroup::Billed],
        Some(g) if g == "unbilled" => vec![KindGroup::Unbilled],
        Some(other) => {
            return HttpResponse::problem(
                400,
                "Invalid plan request",
                &format!("group {other:?}: expected billed or unbilled"),
                Some("group"),
            )
        }
    };
    let only = match req.query.get("partner").map(|p| known_partner(app, p)) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            return HttpResponse::problem(
                400,
                "Invalid plan request",
                &e.to_string(),
                Some(e.field),
            )
        }
    };
    let today = now.date();
    let listed = app.config.has_partner_list();
    let mut timers = serde_json::Map::new();
    for group in groups {
        let plans = timer_plans(app, group, now, only.as_ref()).await;
        // The timers' names come from the function catalogue.
        let name = match group {
            KindGroup::Billed => super::START_BILLED_EXPORTS.name,
            KindGroup::Unbilled => super::START_UNBILLED_EXPORTS.name,
        };
        let mut per_partner = serde_json::Map::new();
        for pp in plans {
            let mut v = plan_json(&pp.plan);
            v["billingMonths"] = json!(pp.scope.months);
            if listed {
                per_partner.insert(pp.plan.partner.to_string(), v);
            } else {
                // One implicit partner: its plan is the timer's entry itself.
                timers.insert(name.into(), v);
            }
        }
        if listed {
            timers.insert(name.into(), json!({ "partners": per_partner }));
        }
    }
    HttpResponse::json(200, json!({ "asOf": today.to_string(), "timers": timers }))
}

pub fn parse_backfill(body: Option<&str>) -> Result<BackfillRequest, InvalidInput> {
    let body = body.filter(|b| !b.trim().is_empty()).ok_or_else(|| {
        InvalidInput::new(
            "body",
            "expected {\"from\": \"2025-01\", \"to\": \"2025-06\"}",
        )
    })?;
    let v: Value = serde_json::from_str(body)
        .map_err(|e| InvalidInput::new("body", format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| InvalidInput::new("body", "expected a JSON object"))?;
    for k in obj.keys() {
        if !["from", "to", "kinds", "partners", "dryRun"].contains(&k.as_str()) {
            return Err(InvalidInput::new(
                "body",
                format!("unknown field {k:?}; expected from, to, kinds, partners, dryRun"),
            ));
        }
    }
    let month = |field: &'static str| -> Result<Option<BillingMonth>, InvalidInput> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|e: String| InvalidInput::new(field, e)),
            Some(_) => Err(InvalidInput::new(
                field,
                "expected a string like \"2025-01\"",
            )),
        }
    };
    let from = month("from")?.ok_or_else(|| InvalidInput::new("from", "is required"))?;
    let to = month("to")?.unwrap_or(from);
    let kinds = match obj.get("kinds") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|k| {
                    k.as_str()
                        .ok_or_else(|| InvalidInput::new("kinds", "expected strings"))?
                        .parse::<ExportKind>()
                        .map_err(|e| InvalidInput::new("kinds", e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => {
            return Err(InvalidInput::new(
                "kinds",
                "expected an array of export kinds",
            ))
        }
    };
    let partners = match obj.get("partners") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if !items.is_empty() => Some(
            items
                .iter()
                .map(|p| {
                    p.as_str()
                        .ok_or_else(|| InvalidInput::new("partners", "expected strings"))?
                        .parse::<PartnerId>()
                        .map_err(|e| InvalidInput::new("partners", e.reason))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => {
            return Err(InvalidInput::new(
                "partners",
                "expected a non-empty array of partner ids",
            ))
        }
    };
    let dry_run = match obj.get("dryRun") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(InvalidInput::new("dryRun", "expected true or false")),
    };
    let req = BackfillRequest {
        from,
        to,
        kinds,
        partners,
        dry_run,
    };
    req.validate()?;
    Ok(req)
}

/// `POST /api/backfill` with `{"from": "2025-01", "to": "2025-06", "kinds"?: [...], "dryRun"?: bool}`.
pub async fn backfill(app: &App, req: HttpRequestData, now: OffsetDateTime) -> HttpResponse {
    if req.method != "POST" {
        return HttpResponse::problem(405, "Method not allowed", "use POST /api/backfill", None);
    }
    let invalid = |e: InvalidInput| {
        HttpResponse::problem(
            400,
            "Invalid backfill request",
            &e.to_string(),
            Some(e.field),
        )
    };
    let request = match parse_backfill(req.body.as_deref()) {
        Ok(b) => b,
        Err(e) => return invalid(e),
    };
    match backfill::backfill(app, request, now).await {
        Ok(report) => render_backfill(app, &report),
        Err(e) => invalid(e),
    }
}

/// The backfill's answer: the plans of every partner merged (entries name their partner when
/// the deployment lists partners), then each start's outcome.
fn render_backfill(app: &App, report: &BackfillReport) -> HttpResponse {
    let listed = app.config.has_partner_list();
    let mut merged = Plan::default();
    let mut failures = Vec::new();
    for plan in &report.plans {
        let who = &plan.partner;
        merged.requests.extend(plan.requests.iter().cloned());
        for s in &plan.skipped {
            let mut s = s.clone();
            if listed && s.billing_month.is_some() && s.run_id.is_none() {
                s.what = format!("{who}: {}", s.what);
            }
            merged.skipped.push(s);
        }
        merged.notes.extend(plan.notes.iter().map(|n| {
            if listed {
                format!("{who}: {n}")
            } else {
                n.clone()
            }
        }));
        if let Some(f) = &plan.discovery_failure {
            failures.push(json!({
                "partner": who,
                "billingMonth": f.month,
                "reason": f.error.to_string(),
                "fix": f.hint(),
            }));
        }
    }
    let mut body = plan_json(&merged);
    // The first partner's discovery failure stands for all in `discoveryFailure`.
    if let Some(first) = failures.first() {
        let mut f = first.clone();
        if let Some(o) = f.as_object_mut() {
            o.remove("partner");
        }
        body["discoveryFailure"] = f;
    }
    if listed {
        body["partners"] = json!(report.partners);
        body["discoveryFailures"] = json!(failures);
    }
    let b = &report.request;
    body["from"] = json!(b.from);
    body["to"] = json!(b.to);
    body["dryRun"] = json!(b.dry_run);
    if b.dry_run {
        return HttpResponse::json(200, body);
    }
    let mut started = Vec::new();
    let mut failed = 0;
    for r in report.starts.iter().flat_map(|s| &s.results) {
        let mut v = planner::describe(&r.planned);
        match &r.outcome {
            Ok(outcome) => {
                let (what, run) = match outcome {
                    StartOutcome::Started(r) => ("started", r),
                    StartOutcome::Duplicate(r) => ("duplicate", r),
                    StartOutcome::Rejected(r) => ("rejected", r),
                };
                v["outcome"] = json!(what);
                v["runId"] = json!(run.run_id);
                v["statusUrl"] = json!(format!("/api/exports/{}", run.run_id));
                if let Some(f) = &run.failure {
                    v["reason"] = json!(f.message);
                }
            }
            Err(e) => {
                failed += 1;
                v["outcome"] = json!("error");
                v["reason"] = json!(e.to_string());
            }
        }
        started.push(v);
    }
    let total = started.len();
    body["start"] = json!(started);
    let status = if failed > 0 && failed == total {
        503
    } else {
        202
    };
    let mut res = HttpResponse::json(status, body);
    if status == 503 {
        res = res.header("Retry-After", "30");
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backfill_bodies_are_validated() {
        let ok = parse_backfill(Some(
            r#"{"from": "2025-01", "to": "2025-06", "kinds": ["billedUsage"]}"#,
        ))
        .unwrap();
        assert_eq!(ok.from.to_string(), "2025-01");
        assert_eq!(ok.kinds, Some(vec![ExportKind::BilledUsage]));
        assert!(!ok.dry_run);
        let single = parse_backfill(Some(r#"{"from": "2025-01", "dryRun": true}"#)).unwrap();
        assert_eq!(single.to, single.from);
        for (body, field) in [
            ("", "body"),
            ("[]", "body"),
            (r#"{"to": "2025-01"}"#, "from"),
            (r#"{"from": "2025-13"}"#, "from"),
            (r#"{"from": "2025-06", "to": "2025-01"}"#, "to"),
            (r#"{"from": "2000-01", "to": "2020-01"}"#, "to"),
            (r#"{"from": "2025-01", "kinds": ["usage"]}"#, "kinds"),
            (r#"{"from": "2025-01", "partner": "x"}"#, "body"),
        ] {
            assert_eq!(
                parse_backfill(Some(body)).unwrap_err().field,
                field,
                "{body}"
            );
        }
    }
}
