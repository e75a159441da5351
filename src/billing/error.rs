//! What can go wrong talking to Graph or Partner Center.

use crate::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Graph answered 4xx (other than 429/410) with its error envelope.
    #[error("Graph refused the request ({status}): {code}: {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    /// 429 / 5xx / network errors that outlasted the retry budget.
    #[error("Graph did not answer successfully after {attempts} attempts: {last}")]
    Unavailable {
        attempts: u32,
        last: String,
        /// The wait the service asked for, when longer than an invocation may sleep.
        retry_after: Option<std::time::Duration>,
    },
    /// A response that breaks the documented contract (missing Location, bad JSON, hostile manifest ...).
    #[error("unexpected answer from Graph: {0}")]
    InvalidResponse(String),
    /// A manifest we refuse (hostile or malformed field, `rootDirectory` off the source storage
    /// allow-list): the run fails with the `manifest` code, wherever the manifest was read.
    #[error("unexpected answer from Graph: {0}")]
    InvalidManifest(String),
}

impl BillingError {
    /// Whether trying the same step later may succeed: an outage of Graph, or of the identity
    /// endpoint or Entra ID behind the credential (a token that could not be fetched now may
    /// be fetched in a minute). A host refused by the allow-list is not transient.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BillingError::Unavailable { .. } | BillingError::Auth(AuthError::Credential { .. })
        )
    }

    /// A token that was issued but may not be used for this partner: no export may start.
    pub fn is_access_denied(&self) -> bool {
        matches!(self, BillingError::Auth(AuthError::Access { .. }))
    }

    /// How long the service asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            BillingError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
