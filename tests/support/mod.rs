//! Test support shared by the Azure adapter tests: Azurite, an account-SAS signer and a
//! recording stand-in of a storage account.
#![allow(dead_code)]

pub mod azurite;
pub mod recorder;
