//! partner-billing-export: an Azure Functions custom handler that runs Microsoft Graph partner
//! billing exports end to end. docs/architecture.md describes the layers and what each may use.

pub mod adapters;
pub mod app;
pub mod auth;
pub mod billing;
pub mod cli;
pub mod config;
pub mod contracts;
pub mod functions;
pub mod http_retry;
pub mod pipeline;
pub mod planner;
pub mod settings;
pub mod telemetry;
pub mod usecases;
