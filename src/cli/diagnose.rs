//! What a failure most likely means for someone running `export` on a laptop, and the fix, in
//! one sentence each: not signed in, missing permission, not a partner tenant, unknown invoice,
//! the wrong API version.
//!
//! The Azure CLI is never the fix for a permission: its Graph tokens come from Microsoft's own
//! first-party app, whose permissions tenants cannot extend (Azure/azure-cli issues 12986,
//! 30149, 26471), so PartnerBilling.Read.All is never in them. The fix is the partner's own app
//! with a device sign-in (`--client-id`), or an app with a secret or certificate.

use std::fmt;

use crate::adapters::device_code;
use crate::auth::claims::AccessProblem;
use crate::auth::AuthError;
use crate::billing::{BillingError, GraphVersion};
use crate::pipeline::{Failure, FailureCode};

/// A problem a user can fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The credential could not produce a token (Azure CLI: not logged in).
    NotSignedIn { credential: String },
    /// The device sign-in did not complete (unknown app or tenant, public client flows off,
    /// declined, code expired).
    DeviceSignInFailed,
    /// A token of the Azure CLI's own app, which can never hold PartnerBilling.Read.All.
    AzureCliCannotExport,
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

/// The Azure CLI's application id (Microsoft's first-party client, the same in every tenant).
pub const AZURE_CLI_APP_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// What a failed token fetch means.
pub fn auth(e: &AuthError) -> Option<Problem> {
    match e {
        AuthError::Credential { credential, .. } if credential.starts_with(device_code::LABEL) => {
            Some(Problem::DeviceSignInFailed)
        }
        AuthError::Credential { credential, .. } => Some(Problem::NotSignedIn {
            credential: credential.clone(),
        }),
        AuthError::Access { problem, .. } => access(problem),
        _ => None,
    }
}

/// What a token refused before use means, beyond what the refusal says itself.
pub fn access(problem: &AccessProblem) -> Option<Problem> {
    match problem {
        AccessProblem::MissingPermission { app: Some(app), .. }
            if app.eq_ignore_ascii_case(AZURE_CLI_APP_ID) =>
        {
            Some(Problem::AzureCliCannotExport)
        }
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
                 `az login --tenant <partner tenant id>`) and try again. The Azure CLI's tokens \
                 never carry PartnerBilling.Read.All, so for Microsoft Graph's billing exports \
                 sign in with your partner tenant's own app instead: --client-id <application \
                 id> --tenant <partner tenant id>",
            ),
            Problem::NotSignedIn { credential } => write!(
                f,
                "the {credential} credential could not sign in: check its settings \
                 (GRAPH_CREDENTIAL_KIND and the GRAPH_* settings it reads), or sign in as a user \
                 with --client-id <application id> --tenant <partner tenant id>"
            ),
            Problem::DeviceSignInFailed => f.write_str(
                "the device sign-in did not complete: check --client-id (the application id of \
                 the app registration) and --tenant (the partner tenant it is registered in), \
                 that the app allows public client flows, and sign in in the browser with an \
                 account of that tenant; then run the command again",
            ),
            Problem::AzureCliCannotExport => f.write_str(
                "this token is the Azure CLI's, and the Azure CLI's app cannot be granted \
                 PartnerBilling.Read.All (Microsoft fixes its permissions; no consent adds it). \
                 Sign in with your partner tenant's own app: --client-id <application id> \
                 --tenant <partner tenant id> (README, \"Try it on your own data\")",
            ),
            Problem::TokenRefused { service } => write!(
                f,
                "{service} did not accept the token: check the tenant (--tenant or \
                 GRAPH_TENANT_ID is the partner tenant) and sign in again (a device sign-in \
                 asks again with a new --token-cache file)"
            ),
            Problem::MissingPermission => f.write_str(
                "missing permission PartnerBilling.Read.All: Graph refused the export. Grant \
                 the Microsoft Graph permission PartnerBilling.Read.All, with admin consent, to \
                 the app you sign in with: delegated for a device sign-in (--client-id), an \
                 application permission for client-secret or client-certificate. The Azure \
                 CLI's own app cannot be granted it",
            ),
            Problem::NotPartnerTenant => f.write_str(
                "not a partner tenant: the billing reports exist only in a CSP partner's tenant. \
                 Sign in to the partner tenant (--tenant <partner tenant id>) with an account or \
                 app of that tenant",
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

    #[test]
    fn no_hint_asks_to_consent_a_scope_for_the_azure_cli() {
        let all = [
            Problem::NotSignedIn {
                credential: "Azure CLI".into(),
            },
            Problem::NotSignedIn {
                credential: "client secret".into(),
            },
            Problem::DeviceSignInFailed,
            Problem::AzureCliCannotExport,
            Problem::TokenRefused {
                service: "Microsoft Graph",
            },
            Problem::MissingPermission,
            Problem::NotPartnerTenant,
        ];
        for p in all {
            let text = p.to_string();
            assert!(!text.contains("consented for your account"), "{text}");
            assert!(!text.contains("signed in with `az login`)"), "{text}");
        }
        let cli = AccessProblem::MissingPermission {
            app: Some(AZURE_CLI_APP_ID.into()),
            delegated: true,
            granted: vec!["User.Read".into()],
        };
        assert_eq!(access(&cli), Some(Problem::AzureCliCannotExport));
        let own = AccessProblem::MissingPermission {
            app: Some("11111111-1111-1111-1111-111111111111".into()),
            delegated: true,
            granted: vec![],
        };
        assert_eq!(access(&own), None);
        let e = AuthError::Credential {
            credential: format!("{} (app a, tenant t)", device_code::LABEL),
            audience: "Microsoft Graph",
            reason: "x".into(),
        };
        assert_eq!(auth(&e), Some(Problem::DeviceSignInFailed));
    }
}
