//! `Plan` (HTTP `GET /api/plan`): what the next firings of both start timers would start,
//! without starting anything. `Backfill` (HTTP `POST /api/backfill`): plans a range of billing
//! months, starts what the ledger lacks, and answers with the plan and what it skipped and why.
//! Both decode the request, call the use case and render its report.

use time::OffsetDateTime;

use crate::app::App;
use crate::billing::InvalidInput;
use crate::contracts::plan::{
    BackfillBody, BackfillOutcome, DiscoveryFailureNote, PlanBody, PlannedExport, TimerPlans,
};
use crate::pipeline::StartOutcome;
use crate::planner::{KindGroup, Plan};
use crate::usecases::backfill::{self, BackfillReport, BackfillRequest};
use crate::usecases::plans::{discovery_note, known_partner, timer_plan, timer_plans};
use functions_runtime::{HttpRequestData, HttpResponse};

fn body<T: serde::Serialize>(status: u16, value: &T) -> HttpResponse {
    HttpResponse::json(
        status,
        serde_json::to_value(value).expect("contracts serialize"),
    )
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
    let mut timers = std::collections::BTreeMap::new();
    for group in groups {
        let plans = timer_plans(app, group, now, only.as_ref()).await;
        // The timers' names come from the function catalogue.
        let name = match group {
            KindGroup::Billed => super::START_BILLED_EXPORTS.name,
            KindGroup::Unbilled => super::START_UNBILLED_EXPORTS.name,
        };
        let mut partners = std::collections::BTreeMap::new();
        for pp in plans {
            let mut v = timer_plan(&pp.plan);
            v.billing_months = Some(pp.scope.months.clone());
            if listed {
                partners.insert(pp.plan.partner.clone(), v);
            } else {
                // One implicit partner: its plan is the timer's entry itself.
                timers.insert(name.to_string(), TimerPlans::Single(Box::new(v)));
            }
        }
        if listed {
            timers.insert(name.to_string(), TimerPlans::Partners { partners });
        }
    }
    body(
        200,
        &PlanBody {
            as_of: today,
            timers,
        },
    )
}

/// The backfill body, read into its contract (errors name the field), as the use case's request.
pub fn parse_backfill(body: Option<&str>) -> Result<BackfillRequest, InvalidInput> {
    let b = crate::contracts::plan::BackfillRequest::parse(body)?;
    let (from, to) = b.range(backfill::MAX_BACKFILL_MONTHS)?;
    let req = BackfillRequest {
        from,
        to,
        kinds: b.kinds,
        partners: b.partners,
        dry_run: b.dry_run,
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
            failures.push(discovery_note(f, Some(who)));
        }
    }
    let mut plan = timer_plan(&merged);
    // The first partner's discovery failure stands for all in `discoveryFailure`.
    plan.discovery_failure = failures.first().map(|f| DiscoveryFailureNote {
        partner: None,
        ..f.clone()
    });
    let b = &report.request;
    let mut answer = BackfillBody {
        plan,
        from: b.from,
        to: b.to,
        dry_run: b.dry_run,
        partners: listed.then(|| report.partners.clone()),
        discovery_failures: listed.then_some(failures),
    };
    if b.dry_run {
        return body(200, &answer);
    }
    let mut started = Vec::new();
    let mut failed = 0;
    for r in report.starts.iter().flat_map(|s| &s.results) {
        let mut v = PlannedExport::of(&r.planned.request, r.planned.billing_month);
        match &r.outcome {
            Ok(outcome) => {
                let (what, run) = match outcome {
                    StartOutcome::Started(r) => (BackfillOutcome::Started, r),
                    StartOutcome::Duplicate(r) => (BackfillOutcome::Duplicate, r),
                    StartOutcome::Rejected(r) => (BackfillOutcome::Rejected, r),
                };
                v.outcome = Some(what);
                v.run_id = Some(run.run_id.to_string());
                v.status_url = Some(format!("/api/exports/{}", run.run_id));
                v.reason = run.failure.as_ref().map(|f| f.message.clone());
            }
            Err(e) => {
                failed += 1;
                v.outcome = Some(BackfillOutcome::Error);
                v.reason = Some(e.to_string());
            }
        }
        started.push(v);
    }
    let total = started.len();
    answer.plan.start = started;
    let status = if failed > 0 && failed == total {
        503
    } else {
        202
    };
    let mut res = body(status, &answer);
    if status == 503 {
        res = res.header("Retry-After", "30");
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::ExportKind;

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
