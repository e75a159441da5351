//! Partner Center's invoice list (`GET /v1/invoices`), with paging.

use serde_json::json;
use warp::http::StatusCode;

use super::super::{bump, invoices, Inner};
use crate::tokens::{partner_center_token, LOCAL_PARTNER_CENTER_TOKEN};

use super::{bearer, json_reply, Reply, Request};

pub(super) fn list_invoices(inner: &Inner, req: &Request) -> Reply {
    let partner = match bearer(&req.headers) {
        Some(t) if t == LOCAL_PARTNER_CENTER_TOKEN => None,
        Some(t)
            if inner
                .cfg
                .partners
                .iter()
                .any(|p| partner_center_token(&p.id) == t) =>
        {
            inner
                .cfg
                .partners
                .iter()
                .position(|p| partner_center_token(&p.id) == t)
        }
        _ => {
            // Partner Center refuses tokens for any other audience, Graph's included.
            bump(&inner.counters.unauthorized, 1);
            return json_reply(
                StatusCode::UNAUTHORIZED,
                &json!({
                    "code": 401,
                    "description": "Authentication failed: the token is missing or not issued for https://api.partnercenter.microsoft.com.",
                    "data": [],
                    "source": "PartnerFD"
                }),
            );
        }
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
