//! partner-billing-export: an Azure Functions custom handler that runs Microsoft Graph partner
//! billing exports end to end. See README.md for the picture and DESIGN notes in the modules.

pub mod auth;
pub mod billing;
pub mod functions;
pub mod package;
pub mod settings;
