//! Microsoft Graph partner billing: domain types, the export client and invoice discovery.

pub mod client;
pub mod invoices;
pub mod manifest;
pub mod model;
pub mod operation;
pub mod types;

pub use client::{BillingClient, BillingError, GraphConfig, GraphVersion};
pub use model::*;
pub use types::*;

/// The `se=` (signed expiry) of a SAS query string, if present and parseable.
pub fn sas_expiry(sas: &str) -> Option<time::OffsetDateTime> {
    let raw = sas
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix("se="))?;
    let decoded = percent_decode(raw);
    time::OffsetDateTime::parse(&decoded, &time::format_description::well_known::Rfc3339).ok()
}

pub(crate) fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
