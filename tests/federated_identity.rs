//! The secretless Graph credential: the Function App's managed identity gets a token for
//! `api://AzureADTokenExchange` from the identity endpoint, and Entra's token endpoint accepts
//! it as the client assertion of an app whose federated credential names that identity
//! (Entra: "Configure an application to trust a managed identity"). Against the identity
//! endpoint and Entra stand-ins; `IDENTITY_ENDPOINT` is process-wide, so this binary has one test.

use partner_billing_export::adapters::identity::{token_source_with, CredentialKind};
use partner_billing_export::auth::claims::{check, TokenClaims};
use partner_billing_export::auth::Audience;
use partner_billing_local::entra::{
    issuer, EntraApp, EntraConfig, EntraStandIn, FederatedIdentity,
};
use partner_billing_local::identity::{principal_id, IdentityConfig, IdentityEndpoint};
use partner_billing_local::tokens::LOCAL_TENANT_ID;

const APP: &str = "9d3c1f0a-1111-4222-8333-944455556666";
const OTHER_APP: &str = "9d3c1f0a-1111-4222-8333-944455557777";

#[tokio::test]
async fn the_app_signs_in_with_the_managed_identity_and_nothing_else() {
    let identity = IdentityEndpoint::new(IdentityConfig {
        header_secret: "header".into(),
        tenant_id: LOCAL_TENANT_ID.into(),
        ..IdentityConfig::default()
    });
    let identity_http = identity.serve(0).await.unwrap();
    for (k, v) in identity.settings(&identity_http) {
        std::env::set_var(k, v);
    }
    let trusted = FederatedIdentity {
        issuer: issuer(LOCAL_TENANT_ID),
        subject: principal_id(None),
    };
    let entra = EntraStandIn::new(EntraConfig {
        apps: vec![
            EntraApp {
                tenant_id: LOCAL_TENANT_ID.into(),
                client_id: APP.into(),
                federated: vec![trusted],
                app_roles: vec!["PartnerBilling.Read.All".into()],
                ..EntraApp::default()
            },
            // An app that trusts some other identity.
            EntraApp {
                tenant_id: LOCAL_TENANT_ID.into(),
                client_id: OTHER_APP.into(),
                federated: vec![FederatedIdentity {
                    issuer: issuer(LOCAL_TENANT_ID),
                    subject: principal_id(Some("someone-else")),
                }],
                ..EntraApp::default()
            },
        ],
        pending_polls: 0,
    });
    let entra_http = entra.serve(0).await.unwrap();
    let authority = EntraStandIn::authority(&entra_http).to_string();
    let settings = |name: &str| (name == "AZURE_AUTHORITY_HOST").then(|| authority.clone());
    let kind = |client_id: &str| CredentialKind::FederatedManagedIdentity {
        tenant_id: LOCAL_TENANT_ID.into(),
        client_id: client_id.into(),
        identity_client_id: None,
    };

    let source = token_source_with(&kind(APP), settings).unwrap();
    let graph = source.token(Audience::Graph).await.unwrap();
    let claims = TokenClaims::decode(graph.secret.expose()).unwrap();
    assert_eq!(
        claims.client_app(),
        Some(APP),
        "the app's token, not the identity's"
    );
    assert_eq!(
        check(Audience::Graph, &claims, Some(LOCAL_TENANT_ID)),
        Ok(())
    );
    let pc = source.token(Audience::PartnerCenter).await.unwrap();
    let pc = TokenClaims::decode(pc.secret.expose()).unwrap();
    assert_eq!(
        check(Audience::PartnerCenter, &pc, Some(LOCAL_TENANT_ID)),
        Ok(())
    );
    // The identity was asked only for the exchange token; Entra saw two client assertions.
    let asked: Vec<String> = identity
        .requests()
        .iter()
        .map(|r| r.resource.clone())
        .collect();
    assert!(
        asked.iter().all(|r| r == "api://AzureADTokenExchange"),
        "{asked:?}"
    );
    let grants: Vec<_> = entra.requests();
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert!(grants
        .iter()
        .all(|g| g.grant_type == "client_credentials" && g.granted));

    // An app whose federated credential names another identity: refused, with the fix.
    let other = token_source_with(&kind(OTHER_APP), settings).unwrap();
    let err = other.token(Audience::Graph).await.unwrap_err().to_string();
    assert!(err.contains("AADSTS70021"), "{err}");
    assert!(err.contains("federated identity credential"), "{err}");
    assert!(err.contains("api://AzureADTokenExchange"), "{err}");
    assert!(!err.contains("eyJ"), "no token in the error: {err}");
}
