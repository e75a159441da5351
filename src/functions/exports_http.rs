//! `Exports` (HTTP): `POST /api/exports` starts one export (async request-reply: `202` +
//! `Location`), `GET /api/exports/{runId}` reports it (`202` + `Retry-After` while running,
//! `200` when completed or failed), `GET /api/exports` lists recent runs.

use serde_json::{json, Map, Value};

use crate::app::App;
use crate::billing::{
    AttributeSet, BillingPeriod, CurrencyCode, ExportKind, ExportRequest, InvalidInput, InvoiceId,
    PartnerId,
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
            let mut body = status::view(run, app.pipeline.destination());
            body["statusUrl"] = json!(status_url(run));
            match &outcome {
                StartOutcome::Started(_) | StartOutcome::Duplicate(_) => {
                    body["duplicate"] = json!(matches!(outcome, StartOutcome::Duplicate(_)));
                    HttpResponse::json(202, body)
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
                    p.body["runId"] = json!(run.run_id);
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
            body["progress"]["partsDone"] = json!(parts_done);
            if run.state.is_terminal() {
                HttpResponse::json(200, body)
            } else {
                HttpResponse::json(202, body)
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

/// `GET /api/exports[?kind=&state=&billingMonth=&limit=&offset=]`, newest first.
async fn list(app: &App, req: &HttpRequestData) -> HttpResponse {
    let query = match status::ListQuery::parse(&req.query) {
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
    match app.pipeline.ledger().list(usize::MAX).await {
        Ok(runs) => {
            let (page, total, next) = query.page(&runs);
            HttpResponse::json(
                200,
                json!({
                    "runs": page,
                    "total": total,
                    "offset": query.offset,
                    "limit": query.limit,
                    "next": next.map(|q| format!("/api/exports?{q}")),
                }),
            )
        }
        Err(e) => HttpResponse::problem(500, "Could not read the run ledger", &e.to_string(), None),
    }
}

const START_FIELDS: [&str; 6] = [
    "partner",
    "kind",
    "invoiceId",
    "billingPeriod",
    "currencyCode",
    "attributeSet",
];

fn field_str<'a>(
    o: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, InvalidInput> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(InvalidInput::new(field, "must be a string")),
    }
}

/// Parses `POST /api/exports`'s body, naming the offending field on error.
pub fn parse_start(body: Option<&str>) -> Result<ExportRequest, InvalidInput> {
    let body = body.ok_or_else(|| InvalidInput::new("body", "a JSON object is required"))?;
    let v: Value = serde_json::from_str(body)
        .map_err(|e| InvalidInput::new("body", format!("not valid JSON: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| InvalidInput::new("body", "must be a JSON object"))?;
    if let Some(unknown) = o.keys().find(|k| !START_FIELDS.contains(&k.as_str())) {
        // Typos such as "inoiceId" must not silently start the wrong export.
        let name: String = unknown.chars().take(40).collect();
        return Err(InvalidInput::new(
            "body",
            format!(
                "unknown field {name:?}; expected {}",
                START_FIELDS.join(", ")
            ),
        ));
    }
    let partner = field_str(o, "partner")?
        .map(str::parse::<PartnerId>)
        .transpose()?;
    let kind: ExportKind = field_str(o, "kind")?
        .ok_or_else(|| InvalidInput::new("kind", "is required"))?
        .parse()?;
    let attribute_set = match field_str(o, "attributeSet")? {
        Some(a) => a.parse()?,
        None => AttributeSet::Full,
    };
    if kind.is_billed() {
        for f in ["billingPeriod", "currencyCode"] {
            if o.contains_key(f) {
                return Err(InvalidInput::new(
                    f,
                    format!("does not apply to {kind} (billed exports take invoiceId)"),
                ));
            }
        }
        let invoice: InvoiceId = field_str(o, "invoiceId")?
            .ok_or_else(|| InvalidInput::new("invoiceId", format!("is required for {kind}")))?
            .parse()?;
        ExportRequest::billed(kind, invoice, attribute_set)
            .map(|r| r.for_partner(partner.unwrap_or_default()))
    } else {
        if o.contains_key("invoiceId") {
            return Err(InvalidInput::new(
                "invoiceId",
                format!("does not apply to {kind} (unbilled exports take billingPeriod and currencyCode)"),
            ));
        }
        let period: BillingPeriod = field_str(o, "billingPeriod")?
            .ok_or_else(|| InvalidInput::new("billingPeriod", format!("is required for {kind}")))?
            .parse()?;
        let currency: CurrencyCode = field_str(o, "currencyCode")?
            .ok_or_else(|| InvalidInput::new("currencyCode", format!("is required for {kind}")))?
            .parse()?;
        ExportRequest::unbilled(kind, period, currency, attribute_set)
            .map(|r| r.for_partner(partner.unwrap_or_default()))
    }
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
