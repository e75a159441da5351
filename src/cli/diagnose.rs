//! What a failure most likely means for someone running `export` on a laptop, and the fix, in
//! one sentence each: not signed in, missing permission, not a partner tenant, unknown invoice,
//! the wrong API version.

use std::fmt;

use crate::auth::AuthError;
use crate::billing::{BillingError, GraphVersion};
use crate::pipeline::{Failure, FailureCode};

/// A problem a user can fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The credential could not produce a token (Azure CLI: not logged in).
    NotSignedIn { credential: String },
    /// Graph or Partner Center refused the token itself (401).
    TokenRefused { service: &'static str },
    /// 403 from Graph: the principal lacks `PartnerBilling.Read.All`.
    MissingPermission,
    /// The signed-in tenant is not a CSP partner tenant.
    NotPartnerTenant,
    /// Partner Center refused to list invoices.
    PartnerCenterRefused,
    /// Graph does not know the invoice.
    InvoiceNotFound,
    /// The configured Graph version does not serve the billing reports.
    ApiVersion { version: GraphVersion },
}

/// A refused request as the user saw it: HTTP status, service error code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// Which service answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Graph,
    PartnerCenter,
}

const REJECTED_PREFIX: &str = "Graph refused the request (";

impl Refusal {
    pub fn of(e: &BillingError) -> Option<Self> {
        match e {
            BillingError::Rejected {
                status,
                code,
                message,
            } => Some(Self {
                status: *status,
                code: code.clone(),
                message: message.clone(),
            }),
            _ => None,
        }
    }

    /// The refusal inside a run's failure: a rejected start records the `BillingError::Rejected`
    /// text, `Graph refused the request ({status}): {code}: {message}`.
    pub fn of_failure(f: &Failure) -> Option<Self> {
        if f.code != FailureCode::Rejected {
            return None;
        }
        let rest = f.message.strip_prefix(REJECTED_PREFIX)?;
        let (status, rest) = rest.split_once("): ")?;
        let (code, message) = rest.split_once(": ").unwrap_or((rest, ""));
        Some(Self {
            status: status.parse().ok()?,
            code: code.to_string(),
            message: message.to_string(),
        })
    }
}

fn mentions(haystack: &str, needles: &[&str]) -> bool {
    let h = haystack.to_ascii_lowercase();
    needles.iter().all(|n| h.contains(n))
}

/// What a refused request means.
pub fn refusal(r: &Refusal, service: Service, version: GraphVersion) -> Option<Problem> {
    let text = format!("{} {}", r.code, r.message);
    let not_partner = mentions(&text, &["not", "partner"]) && mentions(&text, &["tenant"]);
    match (service, r.status) {
        (_, 403) if not_partner => Some(Problem::NotPartnerTenant),
        (Service::Graph, 401) => Some(Problem::TokenRefused {
            service: "Microsoft Graph",
        }),
        (Service::PartnerCenter, 401) => Some(Problem::TokenRefused {
            service: "Partner Center",
        }),
        (Service::Graph, 403) => Some(Problem::MissingPermission),
        (Service::PartnerCenter, 403) => Some(Problem::PartnerCenterRefused),
        (Service::Graph, 400 | 404) if mentions(&text, &["resource not found for the segment"]) => {
            Some(Problem::ApiVersion { version })
        }
        (Service::Graph, 400 | 404) if mentions(&text, &["invoice"]) => {
            Some(Problem::InvoiceNotFound)
        }
        _ => None,
    }
}

/// What an error from Graph or Partner Center means.
pub fn billing(e: &BillingError, service: Service, version: GraphVersion) -> Option<Problem> {
    match e {
        BillingError::Auth(a) => auth(a),
        other => refusal(&Refusal::of(other)?, service, version),
    }
}

/// What a failed token fetch means.
pub fn auth(e: &AuthError) -> Option<Problem> {
    match e {
        AuthError::Credential { credential, .. } => Some(Problem::NotSignedIn {
            credential: credential.clone(),
        }),
        _ => None,
    }
}

/// What a failed run means (only rejected starts carry a diagnosable refusal).
pub fn failure(f: &Failure, version: GraphVersion) -> Option<Problem> {
    refusal(&Refusal::of_failure(f)?, Service::Graph, version)
}

/// Graph had no data for the export (failed operation, code 5000): not an error of the run.
pub fn is_no_data(f: &Failure) -> bool {
    f.code == FailureCode::Graph("5000".into())
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotSignedIn { credential } if credential == "Azure CLI" => f.write_str(
                "not signed in: run `az login` (with an account of the partner tenant: \
                 `az login --tenant <partner tenant id>`) and try again, or set \
                 GRAPH_CREDENTIAL_KIND=client-secret with GRAPH_TENANT_ID, GRAPH_CLIENT_ID and \
                 GRAPH_CLIENT_SECRET",
            ),
            Problem::NotSignedIn { credential } => write!(
                f,
                "the {credential} credential could not sign in: check its settings \
                 (GRAPH_CREDENTIAL_KIND; on a laptop leave it unset to use `az login`)"
            ),
            Problem::TokenRefused { service } => write!(
                f,
                "{service} did not accept the token: sign in again with `az login` (to the \
                 partner tenant: `az login --tenant <partner tenant id>`)"
            ),
            Problem::MissingPermission => f.write_str(
                "missing permission PartnerBilling.Read.All: Graph refused the export. Grant \
                 the Microsoft Graph permission PartnerBilling.Read.All (an application \
                 permission with admin consent for an app, GRAPH_CREDENTIAL_KIND=client-secret; \
                 or consented for your account when signed in with `az login`)",
            ),
            Problem::NotPartnerTenant => f.write_str(
                "not a partner tenant: the billing reports exist only in a CSP partner's tenant. \
                 Sign in to the partner tenant (`az login --tenant <partner tenant id>`) with an \
                 account or app of that tenant",
            ),
            Problem::PartnerCenterRefused => f.write_str(
                "Partner Center refused to list invoices: the account needs a Partner Center \
                 billing role (Billing admin or Admin agent) in the partner tenant, or an app \
                 registered in Partner Center; or name the invoices with --invoice instead of \
                 --months",
            ),
            Problem::InvoiceNotFound => f.write_str(
                "invoice not found: check the id in Partner Center (Billing > Invoices); an \
                 invoice is published about the 8th of the month after its billing period, and \
                 only new-commerce invoices (ids starting with G) can be exported",
            ),
            Problem::ApiVersion { version } => {
                let other = match version {
                    GraphVersion::V1 => "beta",
                    GraphVersion::Beta => "v1.0",
                };
                write!(
                    f,
                    "Graph API version {} does not serve this export: set GRAPH_API_VERSION={other} \
                     (unbilled reconciliation reached beta before v1.0)",
                    version.segment()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, code: &str, message: &str) -> BillingError {
        BillingError::Rejected {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_recorded_rejection_reads_back() {
        // The format `Refusal::of_failure` parses is BillingError's own Display.
        let e = rejected(404, "NotFound", "Invoice G1: was not found.");
        let f = Failure {
            code: FailureCode::Rejected,
            message: e.to_string(),
            at: time::OffsetDateTime::now_utc(),
        };
        assert_eq!(Refusal::of_failure(&f), Refusal::of(&e));
        assert_eq!(
            failure(&f, GraphVersion::V1),
            Some(Problem::InvoiceNotFound)
        );
    }

    #[test]
    fn classifies_refusals() {
        let v = GraphVersion::V1;
        let g = |s, c, m| billing(&rejected(s, c, m), Service::Graph, v);
        assert_eq!(
            g(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges"
            ),
            Some(Problem::MissingPermission)
        );
        assert_eq!(
            g(403, "Forbidden", "The tenant is not a partner tenant."),
            Some(Problem::NotPartnerTenant)
        );
        assert_eq!(
            g(
                404,
                "UnknownError",
                "Resource not found for the segment 'x'."
            ),
            Some(Problem::ApiVersion { version: v })
        );
        assert_eq!(g(400, "BadRequest", "bad attributeSet"), None);
        assert_eq!(
            billing(&rejected(403, "403", "denied"), Service::PartnerCenter, v),
            Some(Problem::PartnerCenterRefused)
        );
        assert!(Problem::ApiVersion { version: v }
            .to_string()
            .contains("GRAPH_API_VERSION=beta"));
    }
}
