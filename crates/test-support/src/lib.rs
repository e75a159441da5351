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
