//! Partner Center's invoices: the list (`GET /v1/invoices`, with paging) and one invoice
//! (`GET /v1/invoices/{id}`).

use serde_json::json;
use warp::http::StatusCode;

use super::super::{bump, invoices, Inner};
use crate::tokens::{audience_claim, LOCAL_TENANT_ID};
use partner_billing_export::auth::claims::TokenClaims;
use partner_billing_export::auth::Audience;

use super::{bearer, json_reply, Reply, Request};

/// Whose Partner Center token this is: `None` for the single-tenant sandbox's own, the index
/// of a listed partner, or the refusal for any other token (Graph's included): the claims
/// decide, `aud` Partner Center and `tid` a tenant the sandbox knows.
fn caller(inner: &Inner, req: &Request) -> Result<Option<usize>, Box<Reply>> {
    let claims = bearer(&req.headers)
        .and_then(TokenClaims::decode)
        .filter(|c| {
            c.aud
                .as_deref()
                .is_some_and(|a| a.trim_end_matches('/') == audience_claim(Audience::PartnerCenter))
        })
        .ok_or_else(|| Box::new(refusal(inner)))?;
    let tenant = claims.tid.unwrap_or_default();
    if tenant.eq_ignore_ascii_case(LOCAL_TENANT_ID) {
        return Ok(None);
    }
    inner
        .cfg
        .partners
        .iter()
        .position(|p| p.tenant_id.to_string().eq_ignore_ascii_case(&tenant))
        .map(Some)
        .ok_or_else(|| Box::new(refusal(inner)))
}

fn refusal(inner: &Inner) -> Reply {
    bump(&inner.counters.unauthorized, 1);
    json_reply(
        StatusCode::UNAUTHORIZED,
        &json!({
            "code": 401,
            "description": "Authentication failed: the token is missing or not issued for https://api.partnercenter.microsoft.com.",
            "data": [],
            "source": "PartnerFD"
        }),
    )
}

/// `GET /v1/invoices/{id}`: one invoice of the caller, its `totalCharges` the sum of its
/// reconciliation data (off by one unit for `mismatched_invoices`).
pub(super) fn get_invoice(inner: &Inner, req: &Request, id: &str) -> Reply {
    let partner = match caller(inner, req) {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    bump(&inner.counters.invoice_gets, 1);
    let today = inner.cfg.clock.as_ref().map_or(inner.today, |c| c.today());
    let found = inner.invoices_of(partner).iter().find(|i| {
        i.id.eq_ignore_ascii_case(id) && (inner.cfg.clock.is_none() || i.invoice_date <= today)
    });
    let Some(invoice) = found else {
        return json_reply(
            StatusCode::NOT_FOUND,
            &json!({"code": 404, "description": format!("Invoice {id} was not found."), "data": [], "source": "PartnerFD"}),
        );
    };
    let mut invoice = invoice.clone();
    let partner_id = partner.map(|i| inner.cfg.partners[i].id.as_str());
    let cents =
        inner
            .state()
            .reconciliation_total_cents(&inner.cfg, today, &invoice.id, partner_id);
    if let Some(cents) = cents {
        let off = if inner
            .cfg
            .mismatched_invoices
            .iter()
            .any(|m| m.eq_ignore_ascii_case(id))
        {
            100
        } else {
            0
        };
        invoice.total_charges = (cents + off) as f64 / 100.0;
    }
    json_reply(StatusCode::OK, &invoice.to_json())
}

pub(super) fn list_invoices(inner: &Inner, req: &Request) -> Reply {
    let partner = match caller(inner, req) {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    bump(&inner.counters.invoice_gets, 1);
    let mut size = invoices::MAX_PAGE_SIZE;
    let mut offset = 0usize;
    for (k, v) in url::form_urlencoded::parse(req.query.as_bytes()) {
        let parsed = v.parse::<usize>();
        match (k.as_ref(), parsed) {
            ("size", Ok(n)) => size = n,
            ("offset", Ok(n)) => offset = n,
            ("size" | "offset", Err(_)) => {
                return json_reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"code": 400, "description": format!("{k} must be a non-negative integer."), "data": [], "source": "PartnerFD"}),
                )
            }
            _ => {}
        }
    }
    let base = format!("{}/partnercenter/v1/invoices", inner.origin);
    // With a clock, an invoice exists from its invoice date on (publication day).
    let published: Vec<invoices::SandboxInvoice> = match &inner.cfg.clock {
        Some(clock) => {
            let today = clock.today();
            inner
                .invoices_of(partner)
                .iter()
                .filter(|i| i.invoice_date <= today)
                .cloned()
                .collect()
        }
        None => inner.invoices_of(partner).to_vec(),
    };
    json_reply(
        StatusCode::OK,
        &invoices::page(&published, size, offset, &base),
    )
}
