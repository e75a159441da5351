//! The fixed bearer tokens the loopback stand-ins accept, one per Entra audience. The handler
//! obtains them the production way, from the managed-identity endpoint stand-in
//! ([`crate::identity`]); in-process tests use [`local_token_source`].

use partner_billing_export::auth::{Audience, StaticTokenSource};

pub const LOCAL_GRAPH_TOKEN: &str = "local-graph-token";
pub const LOCAL_PARTNER_CENTER_TOKEN: &str = "local-partner-center-token";
pub const LOCAL_STORAGE_TOKEN: &str = "local-storage-token";
pub const LOCAL_SERVICEBUS_TOKEN: &str = "local-servicebus-token";
pub const LOCAL_EVENTGRID_TOKEN: &str = "local-eventgrid-token";

/// The local token for an audience.
pub fn local_token(audience: Audience) -> &'static str {
    match audience {
        Audience::Graph => LOCAL_GRAPH_TOKEN,
        Audience::PartnerCenter => LOCAL_PARTNER_CENTER_TOKEN,
        Audience::Storage => LOCAL_STORAGE_TOKEN,
        Audience::ServiceBus => LOCAL_SERVICEBUS_TOKEN,
        Audience::EventGrid => LOCAL_EVENTGRID_TOKEN,
    }
}

/// The Graph token of a sandbox partner tenant: how the sandbox tells partners apart.
pub fn partner_graph_token(partner: &str) -> String {
    format!("{LOCAL_GRAPH_TOKEN}.{partner}")
}

/// The Partner Center token of a sandbox partner tenant.
pub fn partner_center_token(partner: &str) -> String {
    format!("{LOCAL_PARTNER_CENTER_TOKEN}.{partner}")
}

/// A partner tenant's tokens for Graph and Partner Center (the local ones for every other
/// audience), for code that runs the pipeline in-process.
pub fn partner_token_source(partner: &str) -> StaticTokenSource {
    local_token_source()
        .with(Audience::Graph, partner_graph_token(partner))
        .with(Audience::PartnerCenter, partner_center_token(partner))
}

/// Every local token, for code that runs the pipeline in-process.
pub fn local_token_source() -> StaticTokenSource {
    Audience::ALL
        .iter()
        .fold(StaticTokenSource::new(), |s, a| s.with(*a, local_token(*a)))
}
