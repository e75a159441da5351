//! The partner tenants of a partner list, as the stand-ins play them.

use anyhow::Context;
use serde_json::Value;

use crate::entra::{issuer as entra_issuer, EntraApp, FederatedIdentity};
use crate::graph_sandbox::{SandboxConfig, SandboxPartner};
use crate::identity::{principal_id, PartnerClient};
use crate::tokens::LOCAL_TENANT_ID;
use partner_billing_export::auth::claims::PARTNER_BILLING_READ_ALL;
use partner_billing_export::settings as s;

/// How the sandbox partners of a partner list sign in: app registrations for the Entra
/// stand-in, user-assigned identities for the identity endpoint stand-in.
#[derive(Debug, Default)]
pub(super) struct PartnerSignIns {
    pub apps: Vec<EntraApp>,
    pub identities: Vec<PartnerClient>,
}

/// The partner tenants of a `PARTNERS` / `PARTNERS_FILE` setting, as the stand-ins play them:
/// each becomes a sandbox partner (its tenant id, invoices in its first currency) whose
/// managed identity (`credential.clientId`) the identity stand-in serves with that partner's
/// tokens. Returns the (client id, partner id) pairs; `PARTNERS_FILE` is made absolute, since
/// the handler does not run in this directory. The handler validates the list itself.
pub(super) fn sandbox_partners(
    settings: &mut [(String, String)],
    sandbox: &mut SandboxConfig,
) -> anyhow::Result<PartnerSignIns> {
    let setting = |name: &str| {
        settings
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    };
    let json = match (setting(s::PARTNERS), setting(s::PARTNERS_FILE)) {
        (Some(json), _) => json,
        (None, Some(path)) => {
            let abs = std::fs::canonicalize(&path)
                .with_context(|| format!("{}: cannot find {path:?}", s::PARTNERS_FILE))?;
            for (k, v) in settings.iter_mut() {
                if k == s::PARTNERS_FILE {
                    *v = abs.display().to_string();
                }
            }
            std::fs::read_to_string(&abs)
                .with_context(|| format!("{}: reading {}", s::PARTNERS_FILE, abs.display()))?
        }
        (None, None) => return Ok(PartnerSignIns::default()),
    };
    let doc: Value = serde_json::from_str(&json).context("the partner list is not JSON")?;
    let today = sandbox
        .today
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().date());
    let mut sign_ins = PartnerSignIns::default();
    for p in doc["partners"].as_array().into_iter().flatten() {
        let tenant = p["tenantId"].as_str().unwrap_or_default();
        let id = p["id"].as_str().unwrap_or(tenant).to_ascii_lowercase();
        let currency = p["currencies"][0]
            .as_str()
            .unwrap_or("USD")
            .to_ascii_uppercase();
        let symbol = match currency.as_str() {
            "EUR" => "€",
            "GBP" => "£",
            _ => "$",
        };
        let mut partner = SandboxPartner::new(&id, today, (&currency, symbol));
        if let Ok(t) = uuid::Uuid::parse_str(tenant) {
            partner.tenant_id = t;
        }
        let tenant_id = partner.tenant_id.to_string();
        let credential = &p["credential"];
        match (credential["kind"].as_str(), credential["clientId"].as_str()) {
            // The partner's app trusts the (system- or user-assigned) identity of the app.
            (Some("federated-managed-identity"), Some(app)) => {
                sign_ins.apps.push(EntraApp {
                    tenant_id: tenant_id.clone(),
                    client_id: app.to_string(),
                    federated: vec![FederatedIdentity {
                        issuer: entra_issuer(LOCAL_TENANT_ID),
                        subject: principal_id(credential["managedIdentityClientId"].as_str()),
                    }],
                    app_roles: vec![PARTNER_BILLING_READ_ALL.into()],
                    ..EntraApp::default()
                });
                // The user-assigned identity the app uses must exist on the identity endpoint.
                if let Some(identity) = credential["managedIdentityClientId"].as_str() {
                    sign_ins.identities.push(PartnerClient {
                        client_id: identity.to_string(),
                        partner: id.clone(),
                        tenant_id: tenant_id.clone(),
                    });
                }
            }
            (_, Some(client)) => sign_ins.identities.push(PartnerClient {
                client_id: client.to_string(),
                partner: id.clone(),
                tenant_id,
            }),
            _ => {}
        }
        sandbox.partners.push(partner);
    }
    Ok(sign_ins)
}
