//! `Plan` (HTTP `GET /api/plan`): what the next firings of both start timers would start,
//! without starting anything. `Backfill` (HTTP `POST /api/backfill`): plans a range of billing
//! months, starts what the ledger lacks, and answers with the plan and what it skipped and why.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::app::App;
use crate::billing::{BillingMonth, ExportKind, InvalidInput};
use crate::pipeline::{StartOutcome, Trigger};
use crate::planner::{self, KindGroup, Plan, PlanScope};
use functions_runtime::{HttpRequestData, HttpResponse};

/// A backfill longer than this is almost certainly a typo (ten years).
pub const MAX_BACKFILL_MONTHS: usize = 120;

fn plan_json(plan: &Plan) -> Value {
    json!({
        "start": plan.requests.iter().map(planner::describe).collect::<Vec<_>>(),
        "skipped": plan.skipped,
        "notes": plan.notes,
        "invoicesMissing": plan.invoices_missing.as_ref().map(|m| json!({
            "billingMonth": m.month,
            "expectedBy": m.expected_by.to_string(),
        })),
        "discoveryFailure": plan.discovery_failure.as_ref().map(|f| json!({
            "billingMonth": format!("{}-{:02}", f.year, u8::from(f.month)),
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
    let today = now.date();
    let mut timers = serde_json::Map::new();
    for group in groups {
        let (scope, p) = super::start_exports::timer_plan(app, group, today).await;
        let mut v = plan_json(&p);
        v["billingMonths"] = json!(scope.months);
        // The timers' names come from the function catalogue.
        let name = match group {
            KindGroup::Billed => super::START_BILLED_EXPORTS.name,
            KindGroup::Unbilled => super::START_UNBILLED_EXPORTS.name,
        };
        timers.insert(name.into(), v);
    }
    HttpResponse::json(200, json!({ "asOf": today.to_string(), "timers": timers }))
}

#[derive(Debug, PartialEq)]
pub struct BackfillRequest {
    pub from: BillingMonth,
    pub to: BillingMonth,
    pub kinds: Option<Vec<ExportKind>>,
    pub dry_run: bool,
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
        if !["from", "to", "kinds", "dryRun"].contains(&k.as_str()) {
            return Err(InvalidInput::new(
                "body",
                format!("unknown field {k:?}; expected from, to, kinds, dryRun"),
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
    if to < from {
        return Err(InvalidInput::new(
            "to",
            format!("the range ends ({to}) before it starts ({from})"),
        ));
    }
    if from.through(to).len() > MAX_BACKFILL_MONTHS {
        return Err(InvalidInput::new(
            "to",
            format!("more than {MAX_BACKFILL_MONTHS} months"),
        ));
    }
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
    let dry_run = match obj.get("dryRun") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(InvalidInput::new("dryRun", "expected true or false")),
    };
    Ok(BackfillRequest {
        from,
        to,
        kinds,
        dry_run,
    })
}

/// `POST /api/backfill` with `{"from": "2025-01", "to": "2025-06", "kinds"?: [...], "dryRun"?: bool}`.
pub async fn backfill(app: &App, req: HttpRequestData, now: OffsetDateTime) -> HttpResponse {
    if req.method != "POST" {
        return HttpResponse::problem(405, "Method not allowed", "use POST /api/backfill", None);
    }
    let b = match parse_backfill(req.body.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            return HttpResponse::problem(
                400,
                "Invalid backfill request",
                &e.to_string(),
                Some(e.field),
            )
        }
    };
    let today = now.date();
    let (scope, month_skips) =
        PlanScope::backfill(&app.config.plan, b.from, b.to, b.kinds.clone(), today);
    let mut p = planner::plan(
        &app.config.plan,
        &app.invoices,
        app.pipeline.ledger(),
        &scope,
        today,
    )
    .await;
    let mut skipped = month_skips;
    skipped.append(&mut p.skipped);
    p.skipped = skipped;
    let mut body = plan_json(&p);
    body["from"] = json!(b.from);
    body["to"] = json!(b.to);
    body["dryRun"] = json!(b.dry_run);
    if b.dry_run {
        return HttpResponse::json(200, body);
    }
    let mut started = Vec::new();
    let mut failed = 0;
    for planned in &p.requests {
        let mut v = planner::describe(planned);
        match app
            .pipeline
            .start(planned.request.clone(), Trigger::Http)
            .await
        {
            Ok(outcome) => {
                let (what, run) = match &outcome {
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
                tracing::error!(request = %planned.request, error = %e, "backfill could not start an export");
                v["outcome"] = json!("error");
                v["reason"] = json!(e.to_string());
            }
        }
        started.push(v);
    }
    body["start"] = json!(started);
    let status = if failed > 0 && failed == p.requests.len() {
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
