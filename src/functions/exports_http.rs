//! `Exports` (HTTP): `POST /api/exports` starts one export (async request-reply: `202` +
//! `Location`), `GET /api/exports/{runId}` reports it (`202` + `Retry-After` while running,
//! `200` when completed or failed), `GET /api/exports` lists recent runs.

use std::collections::BTreeMap;

use crate::app::App;
use crate::billing::{ExportRequest, InvalidInput};
use crate::contracts::status::{
    ListQuery, RunList, StartExportBody, StartedRun, StateFilter, MAX_PAGE,
};
use crate::pipeline::fanin::Shards;
use crate::pipeline::status;
use crate::pipeline::{PipelineError, RunId, RunRecord, RunState, StartOutcome, Trigger};
use functions_runtime::{HttpRequestData, HttpResponse};

pub async fn run(app: &App, req: HttpRequestData) -> HttpResponse {
    match (req.method.as_str(), req.params.get("runId")) {
        ("POST", None) => start(app, &req).await,
        ("GET", Some(id)) => get(app, id).await,
        ("GET", None) => list(app, &req).await,
        ("POST", Some(_)) => {
            HttpResponse::problem(405, "Method not allowed", "POST goes to /api/exports", None)
        }
        _ => HttpResponse::problem(405, "Method not allowed", "use GET or POST", None),
    }
}

fn status_url(run: &RunRecord) -> String {
    format!("/api/exports/{}", run.run_id)
}

async fn start(app: &App, req: &HttpRequestData) -> HttpResponse {
    let request = match parse_start(req.body.as_deref()).and_then(|r| resolve_partner(app, r)) {
        Ok(r) => r,
        Err(e) => {
            return HttpResponse::problem(
                400,
                "Invalid export request",
                &e.to_string(),
                Some(e.field),
            )
        }
    };
    match app.pipeline.start(request, Trigger::Http).await {
        Ok(outcome) => {
            let run = outcome.run();
            match &outcome {
                StartOutcome::Started(_) | StartOutcome::Duplicate(_) => {
                    let body = StartedRun {
                        run: status::view(run, app.pipeline.destination()),
                        status_url: status_url(run),
                        duplicate: matches!(outcome, StartOutcome::Duplicate(_)),
                    };
                    HttpResponse::json(202, to_json(&body))
                        .header("Location", status_url(run))
                        .header("Retry-After", retry_after(run).to_string())
                }
                StartOutcome::Rejected(_) => {
                    let mut p = HttpResponse::problem(
                        422,
                        "Graph refused the export",
                        &run.failure
                            .as_ref()
                            .map(|f| f.message.clone())
                            .unwrap_or_default(),
                        None,
                    );
                    p.body["runId"] = run.run_id.as_str().into();
                    p.header("Location", status_url(run))
                }
            }
        }
        Err(PipelineError::Invalid(e)) => {
            HttpResponse::problem(400, "Invalid export request", &e.reason, Some(e.field))
        }
        Err(e @ PipelineError::Billing(_)) => HttpResponse::problem(
            503,
            "Microsoft Graph is not available",
            &e.to_string(),
            None,
        )
        .header("Retry-After", "30"),
        Err(e) => {
            tracing::error!(error = %e, "starting an export failed");
            HttpResponse::problem(500, "Could not start the export", &e.to_string(), None)
        }
    }
}

/// Seconds a client should wait before asking again.
fn retry_after(run: &RunRecord) -> u64 {
    let now = time::OffsetDateTime::now_utc();
    run.next_poll_at
        .map(|at| (at - now).whole_seconds().clamp(1, 60) as u64)
        .unwrap_or(5)
}

async fn get(app: &App, id: &str) -> HttpResponse {
    let Ok(id) = id.parse::<RunId>() else {
        return HttpResponse::problem(400, "Invalid run id", "not a run id", Some("runId"));
    };
    match app.pipeline.ledger().get(&id).await {
        Ok(Some(run)) => {
            let mut parts_done = run.parts_done();
            if run.state == RunState::Copying {
                // Progress from the fan-in document (one more small read): whole shards.
                if let Ok(fanin) = app.pipeline.ledger().fanin(&run.run_id).await {
                    parts_done = Shards::of(&run).parts_in(&fanin.completed) as usize;
                }
            }
            let mut body = status::view(&run, app.pipeline.destination());
            body.progress.parts_done = parts_done;
            if run.state.is_terminal() {
                HttpResponse::json(200, to_json(&body))
            } else {
                HttpResponse::json(202, to_json(&body))
                    .header("Location", status_url(&run))
                    .header("Retry-After", retry_after(&run).to_string())
            }
        }
        Ok(None) => HttpResponse::problem(
            404,
            "No such export run",
            &format!("run {id} is not known"),
            Some("runId"),
        ),
        Err(e) => HttpResponse::problem(500, "Could not read the run ledger", &e.to_string(), None),
    }
}

/// `GET /api/exports[?kind=&state=&billingMonth=&limit=&offset=&after=]`, newest first.
async fn list(app: &App, req: &HttpRequestData) -> HttpResponse {
    let query = match parse_list_query(&req.query) {
        Ok(q) => q,
        Err(e) => {
            return HttpResponse::problem(
                400,
                "Invalid list request",
                &e.to_string(),
                Some(e.field),
            )
        }
    };
    match status::list(app.pipeline.ledger(), &query, app.pipeline.now()).await {
        Ok(page) => {
            let body = RunList {
                runs: page.runs,
                total: page.total,
                offset: query.offset,
                limit: query.limit,
                next: page
                    .next
                    .map(|q| format!("/api/exports?{}", list_query_string(&q))),
            };
            HttpResponse::json(200, to_json(&body))
        }
        Err(e) => HttpResponse::problem(500, "Could not read the run ledger", &e.to_string(), None),
    }
}

/// A contract as the JSON body of an answer.
fn to_json<T: serde::Serialize>(body: &T) -> serde_json::Value {
    // The status contracts are plain fields and strings: serialising cannot fail.
    serde_json::to_value(body).unwrap_or_default()
}

/// Parses `POST /api/exports`'s body, naming the offending field on error.
pub fn parse_start(body: Option<&str>) -> Result<ExportRequest, InvalidInput> {
    StartExportBody::parse(body)?.into_request()
}

/// `GET /api/exports`'s query string: `partner`, `kind`, `state` (or `status`), `billingMonth`
/// (`2026-10`), `limit`, `offset`, `after` (a run id: older runs only). Other parameters are ignored: the Functions host adds `code`
/// (the function key).
pub fn parse_list_query(q: &BTreeMap<String, String>) -> Result<ListQuery, InvalidInput> {
    let mut out = ListQuery::default();
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
                let s = StateFilter::ALL
                    .into_iter()
                    .find(|s| s.as_str().eq_ignore_ascii_case(v))
                    .ok_or_else(|| {
                        let names: Vec<&str> =
                            StateFilter::ALL.iter().map(|s| s.as_str()).collect();
                        InvalidInput::new(
                            "state",
                            format!("{v:?}: expected one of {}", names.join(", ")),
                        )
                    })?;
                out.state = Some(s);
            }
            "billingMonth" => {
                out.billing_month = Some(
                    v.parse()
                        .map_err(|e: String| InvalidInput::new("billingMonth", e))?,
                );
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
            "after" => {
                out.after = Some(
                    v.parse()
                        .map_err(|e: InvalidInput| InvalidInput::new("after", e.reason))?,
                )
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The query string that asks for `q` (the `next` link of a list).
pub fn list_query_string(q: &ListQuery) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    if let Some(p) = &q.partner {
        s.append_pair("partner", p.as_str());
    }
    if let Some(k) = q.kind {
        s.append_pair("kind", k.as_str());
    }
    if let Some(st) = q.state {
        s.append_pair("state", st.as_str());
    }
    if let Some(m) = q.billing_month {
        s.append_pair("billingMonth", &m.compact());
    }
    s.append_pair("limit", &q.limit.to_string());
    if q.offset > 0 {
        s.append_pair("offset", &q.offset.to_string());
    }
    if let Some(a) = &q.after {
        s.append_pair("after", a.as_str());
    }
    s.finish()
}

/// The request's partner checked against the configuration: a deployment with one partner
/// (implicit or listed) needs no `partner`; with several, it must name one of them.
pub fn resolve_partner(app: &App, request: ExportRequest) -> Result<ExportRequest, InvalidInput> {
    let partners = &app.config.partners;
    if request.partner.is_default() {
        return match partners.as_slice() {
            [only] => {
                let id = only.id.clone();
                Ok(request.for_partner(id))
            }
            _ => Err(InvalidInput::new(
                "partner",
                format!(
                    "is required: this deployment exports for {}",
                    partner_names(app)
                ),
            )),
        };
    }
    if app.config.partner(&request.partner).is_none() {
        return Err(InvalidInput::new(
            "partner",
            format!(
                "{:?} is not configured; expected one of {}",
                request.partner.as_str(),
                partner_names(app)
            ),
        ));
    }
    Ok(request)
}

fn partner_names(app: &App) -> String {
    app.config
        .partners
        .iter()
        .map(|p| p.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::ExportKind;

    fn field(body: &str) -> &'static str {
        parse_start(Some(body)).unwrap_err().field
    }

    #[test]
    fn valid_bodies() {
        let r = parse_start(Some(r#"{"kind":"billedUsage","invoiceId":"G016907411"}"#)).unwrap();
        assert_eq!(r.kind, ExportKind::BilledUsage);
        let r = parse_start(Some(r#"{"kind":"unbilled-reconciliation","billingPeriod":"last","currencyCode":"eur","attributeSet":"basic"}"#)).unwrap();
        assert_eq!(r.key(), "unbilled-reconciliation/last-eur/basic");
    }

    #[test]
    fn a_partner_may_be_named() {
        let r = parse_start(Some(
            r#"{"partner":"Contoso","kind":"billedUsage","invoiceId":"G1"}"#,
        ))
        .unwrap();
        assert_eq!(r.partner.as_str(), "contoso");
        assert_eq!(r.key(), "partners/contoso/billed-usage/invoice-G1/full");
        let r = parse_start(Some(r#"{"kind":"billedUsage","invoiceId":"G1"}"#)).unwrap();
        assert!(r.partner.is_default());
        assert_eq!(
            field(r#"{"partner":"a/b","kind":"billedUsage","invoiceId":"G1"}"#),
            "partner"
        );
    }

    #[test]
    fn bad_bodies_name_the_field() {
        assert_eq!(parse_start(None).unwrap_err().field, "body");
        assert_eq!(field("[1]"), "body");
        assert_eq!(field("{"), "body");
        assert_eq!(field(r#"{"invoiceId":"G1"}"#), "kind");
        assert_eq!(field(r#"{"kind":"everything"}"#), "kind");
        assert_eq!(field(r#"{"kind":"billedUsage"}"#), "invoiceId");
        assert_eq!(
            field(r#"{"kind":"billedUsage","invoiceId":"../x"}"#),
            "invoiceId"
        );
        assert_eq!(
            field(r#"{"kind":"billedUsage","invoiceId":7}"#),
            "invoiceId"
        );
        assert_eq!(field(r#"{"kind":"billedUsage","inoiceId":"G1"}"#), "body");
        assert_eq!(
            field(r#"{"kind":"billedUsage","invoiceId":"G1","currencyCode":"USD"}"#),
            "currencyCode"
        );
        assert_eq!(
            field(r#"{"kind":"unbilledUsage","currencyCode":"USD"}"#),
            "billingPeriod"
        );
        assert_eq!(
            field(r#"{"kind":"unbilledUsage","billingPeriod":"next","currencyCode":"USD"}"#),
            "billingPeriod"
        );
        assert_eq!(
            field(r#"{"kind":"unbilledUsage","billingPeriod":"current"}"#),
            "currencyCode"
        );
        assert_eq!(
            field(r#"{"kind":"unbilledUsage","billingPeriod":"current","currencyCode":"DOLLARS"}"#),
            "currencyCode"
        );
        assert_eq!(
            field(
                r#"{"kind":"unbilledUsage","billingPeriod":"current","currencyCode":"USD","invoiceId":"G1"}"#
            ),
            "invoiceId"
        );
        assert_eq!(
            field(
                r#"{"kind":"unbilledUsage","billingPeriod":"current","currencyCode":"USD","attributeSet":"all"}"#
            ),
            "attributeSet"
        );
    }
}
