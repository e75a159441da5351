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
    Unavailable { attempts: u32, last: String },
    /// A response that breaks the documented contract (missing Location, bad JSON, hostile manifest ...).
    #[error("unexpected answer from Graph: {0}")]
    InvalidResponse(String),
}

impl BillingError {
    /// Whether trying the same step later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, BillingError::Unavailable { .. })
    }
}
