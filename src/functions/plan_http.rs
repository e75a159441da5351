//! `Plan` (HTTP `GET /api/plan`): what the next firings of both start timers would start,
//! without starting anything. `Backfill` (HTTP `POST /api/backfill`): plans a range of billing
//! months, starts what the ledger lacks, and answers with the plan and what it skipped and why.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::app::App;
use crate::billing::{BillingMonth, ExportKind, InvalidInput, PartnerId};
use crate::pipeline::{StartOutcome, Trigger};
use crate::planner::{self, KindGroup, Plan, PlanScope};
use functions_runtime::{HttpRequestData, HttpResponse};

/// A backfill longer than this is almost certainly a typo (ten years).
pub const MAX_BACKFILL_MONTHS: usize = 120;

fn plan_json(plan: &Plan) -> Value {
    let mut v = plan_json_of(plan);
    if !plan.partner.is_default() {
        v["partner"] = json!(plan.partner);
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
        let plans = super::start_exports::timer_plans(app, group, today, only.as_ref()).await;
        // The timers' names come from the function catalogue.
        let name = match group {
            KindGroup::Billed => super::START_BILLED_EXPORTS.name,
            KindGroup::Unbilled => super::START_UNBILLED_EXPORTS.name,
        };
        let mut per_partner = serde_json::Map::new();
        for (scope, p) in plans {
            let mut v = plan_json(&p);
            v["billingMonths"] = json!(scope.months);
            if listed {
                per_partner.insert(p.partner.to_string(), v);
            } else {
                // One implicit partner: the answer has no per-partner level.
                timers.insert(name.into(), v);
            }
        }
        if listed {
            timers.insert(name.into(), json!({ "partners": per_partner }));
        }
    }
    HttpResponse::json(200, json!({ "asOf": today.to_string(), "timers": timers }))
}

#[derive(Debug, PartialEq)]
pub struct BackfillRequest {
    pub from: BillingMonth,
    pub to: BillingMonth,
    pub kinds: Option<Vec<ExportKind>>,
    /// Only these partners (all when `None`).
    pub partners: Option<Vec<PartnerId>>,
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
    Ok(BackfillRequest {
        from,
        to,
        kinds,
        partners,
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
    let selected = match &b.partners {
        None => app.config.partners.iter().collect::<Vec<_>>(),
        Some(ids) => {
            let mut out = Vec::new();
            for id in ids {
                match known_partner(app, id.as_str()) {
                    Ok(id) => out.extend(app.config.partner(&id)),
                    Err(e) => {
                        return HttpResponse::problem(
                            400,
                            "Invalid backfill request",
                            &InvalidInput::new("partners", e.reason).to_string(),
                            Some("partners"),
                        )
                    }
                }
            }
            out
        }
    };
    let today = now.date();
    // Each partner is planned with its own kinds and invoices; the answer lists them together
    // (each entry names its partner when the deployment lists partners).
    let plans = futures::future::join_all(selected.iter().map(|partner| {
        let kinds = b.kinds.clone();
        async move {
            let (scope, month_skips) =
                PlanScope::backfill(&partner.plan, b.from, b.to, kinds, today);
            let mut p = planner::plan(
                &partner.id,
                &partner.plan,
                app.invoices_for(&partner.id),
                app.pipeline.ledger(),
                &scope,
                today,
            )
            .await;
            let mut skipped = month_skips;
            skipped.append(&mut p.skipped);
            p.skipped = skipped;
            p
        }
    }))
    .await;
    let listed = app.config.has_partner_list();
    let mut p = Plan::default();
    let mut failures = Vec::new();
    for mut one in plans {
        let who = one.partner.clone();
        p.requests.append(&mut one.requests);
        for mut s in one.skipped {
            if listed && s.billing_month.is_some() && s.run_id.is_none() {
                s.what = format!("{who}: {}", s.what);
            }
            p.skipped.push(s);
        }
        p.notes.extend(one.notes.into_iter().map(
            |n| {
                if listed {
                    format!("{who}: {n}")
                } else {
                    n
                }
            },
        ));
        if let Some(f) = one.discovery_failure {
            if listed {
                failures.push(json!({
                    "partner": who,
                    "billingMonth": format!("{}-{:02}", f.year, u8::from(f.month)),
                    "reason": f.error.to_string(),
                    "fix": f.hint(),
                }));
            }
            p.discovery_failure.get_or_insert(f);
        }
    }
    let mut body = plan_json(&p);
    if listed {
        body["partners"] = json!(selected.iter().map(|p| p.id.as_str()).collect::<Vec<_>>());
        body["discoveryFailures"] = json!(failures);
    }
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

/// `id` if the configuration has that partner, else why not (naming the field `partner`).
fn known_partner(app: &App, id: &str) -> Result<PartnerId, InvalidInput> {
    let id: PartnerId = id.parse()?;
    if app.config.partner(&id).is_some() {
        return Ok(id);
    }
    let names: Vec<&str> = app.config.partners.iter().map(|p| p.id.as_str()).collect();
    Err(InvalidInput::new(
        "partner",
        format!(
            "{:?} is not configured; expected one of {}",
            id.as_str(),
            names.join(", ")
        ),
    ))
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
