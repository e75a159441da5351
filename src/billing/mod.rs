//! Microsoft Graph partner billing: domain types, the export client and invoice discovery.

pub mod client;
pub mod error;
pub mod invoices;
pub mod manifest;
pub mod model;
pub mod month;
pub mod operation;
pub mod types;
pub mod wire;

pub use client::{BillingClient, GraphConfig, GraphVersion};
pub use error::BillingError;
pub use manifest::SourceHosts;
pub use model::*;
pub use month::BillingMonth;
pub use types::*;
pub use wire::sas_expiry;
