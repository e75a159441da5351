//! partner-billing-export: an Azure Functions custom handler that runs Microsoft Graph partner
//! billing exports end to end. See README.md for the picture and DESIGN notes in the modules.

pub mod adapters;
pub mod app;
pub mod auth;
pub mod billing;
pub mod config;
pub mod functions;
pub mod http_retry;
pub mod local;
pub mod package;
pub mod pipeline;
pub mod planner;
pub mod runtime;
pub mod settings;
