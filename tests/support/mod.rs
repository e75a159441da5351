//! Test support shared by the storage tests: Azurite, an account-SAS signer, a recording
//! stand-in of a storage account, and the ledger contract.
#![allow(dead_code)]

pub mod azurite;
pub mod ledger;
pub mod recorder;
