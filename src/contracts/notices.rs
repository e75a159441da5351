//! Notices the ledger keeps so that a once-a-month announcement is made once.

use serde::{Deserialize, Serialize};

/// `InvoicesMissing` for one partner and month: recorded (unpublished) before the event goes
/// out, marked `published` once it has, so a later firing re-sends only an unsent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoicesMissingNotice {
    #[serde(with = "super::date")]
    pub checked_on: time::Date,
    pub published: bool,
}
