//! Test support shared by every suite (never linked into the handler): the pipeline test bed
//! over the loopback emulators, Azurite with an account-SAS signer, a recording stand-in of a
//! storage account, the ledger contract, and the payload fixtures under `tests/fixtures/`.

pub mod azurite;
pub mod clock;
pub mod duckdb;
pub mod fixtures;
pub mod ledger;
pub mod recorder;
pub mod testbed;

pub use testbed::{fast_sandbox, TestBed};

use partner_billing_export::billing::{AttributeSet, BillingPeriod, ExportKind, ExportRequest};

/// The export most suites start: unbilled usage of the current period in USD, full set.
pub fn unbilled_usd() -> ExportRequest {
    ExportRequest::unbilled(
        ExportKind::UnbilledUsage,
        BillingPeriod::Current,
        "USD".parse().expect("a currency"),
        AttributeSet::Full,
    )
    .expect("a valid request")
}
