//! The bearer tokens the loopback stand-ins issue and accept, one per Entra audience. The
//! handler obtains them the production way, from the managed-identity endpoint stand-in
//! ([`crate::identity`]) or the Entra stand-in ([`crate::entra`]); in-process tests use
//! [`local_token_source`].
//!
//! Graph and Partner Center tokens are shaped as Entra issues them: JWTs whose payload carries
//! `aud`, `tid` and `roles` (unsigned: `alg: none`), so the handler's claim checks
//! (`auth::claims`) run on them exactly as on Entra's, and the Graph sandbox tells partners
//! apart by their tenant, as Graph does. Storage, Service Bus and Event Grid keep plain tokens:
//! their stand-ins only compare them.

use std::collections::HashMap;
use std::sync::LazyLock;

use partner_billing_export::auth::claims::{unsigned_jwt, PARTNER_BILLING_READ_ALL};
use partner_billing_export::auth::{Audience, StaticTokenSource};
use serde_json::json;

/// The tenant of the single-tenant sandbox partner (what its manifests name as
/// `partnerTenantId`, and what `local` sets as GRAPH_TENANT_ID).
pub const LOCAL_TENANT_ID: &str = "5a4d1b6e-0c0e-4c43-9d0b-10ca1b111e55";
/// The client id of the local stand-ins' app registration (the `appid` of local tokens).
pub const LOCAL_APP_ID: &str = "0ca1a990-0000-4000-8000-000000000001";

pub const LOCAL_STORAGE_TOKEN: &str = "local-storage-token";
pub const LOCAL_SERVICEBUS_TOKEN: &str = "local-servicebus-token";
pub const LOCAL_EVENTGRID_TOKEN: &str = "local-eventgrid-token";

/// The `aud` claim Entra puts in a token for `audience`.
pub fn audience_claim(audience: Audience) -> &'static str {
    audience.scope().trim_end_matches("/.default")
}

/// What a token grants: an app's application permissions (`roles`) or a signed-in user's
/// delegated scopes (`scp`, space-separated).
#[derive(Debug, Clone, Copy)]
pub enum Grant<'a> {
    App(&'a [&'a str]),
    User(&'a str),
}

/// A token for `resource` issued by `tenant` to `app_id`, with the claims Entra's v1 access
/// tokens carry.
pub fn entra_token(resource: &str, tenant: &str, app_id: &str, grant: Grant<'_>) -> String {
    let mut claims = json!({
        "aud": resource,
        "iss": format!("https://sts.windows.net/{tenant}/"),
        "tid": tenant,
        "appid": app_id,
        "ver": "1.0",
    });
    let extra = match grant {
        Grant::App(roles) => json!({"idtyp": "app", "roles": roles}),
        Grant::User(scp) => {
            json!({"idtyp": "user", "scp": scp, "upn": "billing.admin@sandbox.local"})
        }
    };
    if let (Some(c), serde_json::Value::Object(e)) = (claims.as_object_mut(), extra) {
        c.extend(e);
    }
    unsigned_jwt(&claims)
}

/// An app-only token of `tenant` for Graph or Partner Center, as Entra issues it to an app
/// with the Graph application permissions `roles`.
pub fn app_token(audience: Audience, tenant: &str, app_id: &str, roles: &[&str]) -> String {
    entra_token(audience_claim(audience), tenant, app_id, Grant::App(roles))
}

static LOCAL_TOKENS: LazyLock<HashMap<Audience, String>> = LazyLock::new(|| {
    Audience::ALL
        .into_iter()
        .map(|a| {
            let t = match a {
                Audience::Graph | Audience::PartnerCenter => app_token(
                    a,
                    LOCAL_TENANT_ID,
                    LOCAL_APP_ID,
                    &[PARTNER_BILLING_READ_ALL],
                ),
                Audience::Storage => LOCAL_STORAGE_TOKEN.into(),
                Audience::ServiceBus => LOCAL_SERVICEBUS_TOKEN.into(),
                Audience::EventGrid => LOCAL_EVENTGRID_TOKEN.into(),
            };
            (a, t)
        })
        .collect()
});

/// The local token for an audience (the single-tenant sandbox partner's, for Graph and
/// Partner Center).
pub fn local_token(audience: Audience) -> &'static str {
    LOCAL_TOKENS[&audience].as_str()
}

/// The tenant id of a sandbox partner named `partner`: fixed by its name, so a partner list
/// and the sandbox agree without sharing anything else.
pub fn partner_tenant_id(partner: &str) -> uuid::Uuid {
    crate::graph_sandbox::data::Rng::derived(0, &format!("partner-tenant#{partner}")).uuid()
}

/// The Graph token of a sandbox partner tenant.
pub fn partner_graph_token(partner: &str) -> String {
    app_token(
        Audience::Graph,
        &partner_tenant_id(partner).to_string(),
        LOCAL_APP_ID,
        &[PARTNER_BILLING_READ_ALL],
    )
}

/// The Partner Center token of a sandbox partner tenant.
pub fn partner_center_token(partner: &str) -> String {
    app_token(
        Audience::PartnerCenter,
        &partner_tenant_id(partner).to_string(),
        LOCAL_APP_ID,
        &[],
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use partner_billing_export::auth::claims::{check, TokenClaims};

    #[test]
    fn local_tokens_pass_the_handlers_claim_checks() {
        let g = TokenClaims::decode(local_token(Audience::Graph)).unwrap();
        assert_eq!(check(Audience::Graph, &g, Some(LOCAL_TENANT_ID)), Ok(()));
        let pc = TokenClaims::decode(local_token(Audience::PartnerCenter)).unwrap();
        assert_eq!(
            check(Audience::PartnerCenter, &pc, Some(LOCAL_TENANT_ID)),
            Ok(())
        );
        let tenant = partner_tenant_id("contoso").to_string();
        let c = TokenClaims::decode(&partner_graph_token("contoso")).unwrap();
        assert_eq!(check(Audience::Graph, &c, Some(&tenant)), Ok(()));
        assert!(check(Audience::Graph, &c, Some(LOCAL_TENANT_ID)).is_err());
    }
}
