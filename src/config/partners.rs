//! Several partner tenants in one deployment: `PARTNERS` (the JSON in one app setting) or
//! `PARTNERS_FILE` (a path to it), parsed into typed [`PartnerConfig`]s at start-up. Every error
//! names the field (`partners[1].tenantId: ...`). Secrets are references only: a credential names
//! the app setting that holds its secret or certificate (which may itself be a Key Vault
//! reference), so the partner list can live in source control.

use serde_json::{Map, Value};

use crate::adapters::identity::CredentialKind;
use crate::adapters::storage::ObjectPath;
use crate::billing::{
    AttributeSet, BillingPeriod, CurrencyCode, ExportKind, InvalidInput, InvoiceId, PartnerId,
};

use super::PlanConfig;

/// Graph calls in flight per partner when `maxConcurrency` is not given: enough to keep polls
/// and copies moving, few enough that one partner's throttling stays its own.
pub const DEFAULT_PARTNER_CONCURRENCY: usize = 4;
/// Upper bound of `maxConcurrency`.
pub const MAX_PARTNER_CONCURRENCY: usize = 32;

/// A partner tenant's Entra ID tenant id (a GUID, kept in its canonical lower-case form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantId(uuid::Uuid);

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, String> {
        uuid::Uuid::try_parse(s.trim())
            .map(Self)
            .map_err(|_| format!("{:?} is not a GUID", truncate(s, 60)))
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

/// Where a partner credential's secret material is: the NAME of an app setting, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretReference {
    /// An app setting holding the client secret (`client-secret`).
    ClientSecret(String),
    /// An app setting holding the certificate and key as one PEM document (`client-certificate`).
    Certificate(String),
    /// An app setting holding the path of a PEM file (`client-certificate`).
    CertificatePath(String),
}

impl SecretReference {
    pub fn setting(&self) -> &str {
        match self {
            SecretReference::ClientSecret(s)
            | SecretReference::Certificate(s)
            | SecretReference::CertificatePath(s) => s,
        }
    }
}

/// A partner's Graph / Partner Center credential.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerCredential {
    pub kind: CredentialKind,
    pub secret: Option<SecretReference>,
    /// The material `secret` names, read by `config` (empty until `Config::load` fills it).
    pub secrets: super::CredentialSecrets,
}

/// One partner tenant: who it is, how to sign in, what to export and where it lands.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerConfig {
    pub id: PartnerId,
    /// `None` for the implicit partner of a single-tenant deployment.
    pub tenant_id: Option<TenantId>,
    pub credential: PartnerCredential,
    pub plan: PlanConfig,
    /// Folder below `DESTINATION_PREFIX` holding this partner's output; `None` for the implicit
    /// partner, whose output sits directly under `DESTINATION_PREFIX`.
    pub destination_prefix: Option<ObjectPath>,
    /// Graph calls in flight for this partner at most; `None`: unbounded (the implicit
    /// partner).
    pub max_concurrency: Option<usize>,
}

/// What the partner list said wrong: `path` is the field (`partners[1].tenantId`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerError {
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for PartnerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

fn perr(path: impl Into<String>, reason: impl Into<String>) -> PartnerError {
    PartnerError {
        path: path.into(),
        reason: reason.into(),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Field names that would hold a secret itself; refused so a secret never lands in the list.
const LITERAL_SECRET_FIELDS: &[&str] = &[
    "secret",
    "clientsecret",
    "password",
    "certificate",
    "clientcertificate",
    "privatekey",
    "key",
    "pem",
];

/// Parses the partner list. `defaults` supplies fields a partner leaves out (the `EXPORT_*`
/// settings); `setting_is_set` says whether a referenced app setting has a value.
pub fn parse(
    json: &str,
    defaults: &PlanConfig,
    setting_is_set: &dyn Fn(&str) -> bool,
) -> Result<Vec<PartnerConfig>, PartnerError> {
    let root: Value =
        serde_json::from_str(json).map_err(|e| perr("(document)", format!("not JSON: {e}")))?;
    let list = match &root {
        Value::Object(o) => {
            no_unknown(o, "", &["partners"])?;
            o.get("partners")
                .and_then(Value::as_array)
                .ok_or_else(|| perr("partners", "must be a list of partners"))?
        }
        _ => {
            return Err(perr(
                "(document)",
                "must be an object {\"partners\": [...]}",
            ))
        }
    };
    if list.is_empty() {
        return Err(perr("partners", "lists no partner"));
    }
    let mut out: Vec<PartnerConfig> = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let at = format!("partners[{i}]");
        let partner = one(p, &at, defaults, setting_is_set)?;
        if out.iter().any(|o| o.id == partner.id) {
            return Err(perr(
                format!("{at}.id"),
                format!("{:?} is used by another partner", partner.id.as_str()),
            ));
        }
        // Two entries of one tenant would export the same data twice, into two folders.
        if let Some(other) = out.iter().find(|o| o.tenant_id == partner.tenant_id) {
            return Err(perr(
                format!("{at}.tenantId"),
                format!(
                    "{} is also partner {:?}'s tenant: list each tenant once",
                    partner.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
                    other.id.as_str()
                ),
            ));
        }
        if out
            .iter()
            .any(|o| o.destination_prefix == partner.destination_prefix)
        {
            return Err(perr(
                format!("{at}.destinationPrefix"),
                "is another partner's folder",
            ));
        }
        out.push(partner);
    }
    Ok(out)
}

fn no_unknown(o: &Map<String, Value>, at: &str, known: &[&str]) -> Result<(), PartnerError> {
    for k in o.keys() {
        if !known.contains(&k.as_str()) {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            return Err(perr(
                path,
                format!("unknown field; expected one of {}", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn string<'a>(
    o: &'a Map<String, Value>,
    at: &str,
    name: &str,
) -> Result<Option<&'a str>, PartnerError> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim())),
        Some(_) => Err(perr(format!("{at}.{name}"), "must be a string")),
    }
}

fn list<T>(
    o: &Map<String, Value>,
    at: &str,
    name: &str,
    parse: impl Fn(&str) -> Result<T, InvalidInput>,
) -> Result<Option<Vec<T>>, PartnerError> {
    let Some(v) = o.get(name) else {
        return Ok(None);
    };
    let items = v
        .as_array()
        .ok_or_else(|| perr(format!("{at}.{name}"), "must be a list of strings"))?;
    items
        .iter()
        .enumerate()
        .map(|(j, x)| {
            let path = format!("{at}.{name}[{j}]");
            let s = x.as_str().ok_or_else(|| perr(&path, "must be a string"))?;
            parse(s).map_err(|e| perr(&path, e.reason))
        })
        .collect::<Result<Vec<T>, _>>()
        .map(Some)
}

fn one(
    p: &Value,
    at: &str,
    defaults: &PlanConfig,
    setting_is_set: &dyn Fn(&str) -> bool,
) -> Result<PartnerConfig, PartnerError> {
    let o = p.as_object().ok_or_else(|| perr(at, "must be an object"))?;
    no_unknown(
        o,
        at,
        &[
            "id",
            "tenantId",
            "credential",
            "kinds",
            "attributeSet",
            "unbilledPeriods",
            "currencies",
            "destinationPrefix",
            "invoiceDiscovery",
            "invoiceIds",
            "maxConcurrency",
        ],
    )?;
    let tenant_raw =
        string(o, at, "tenantId")?.ok_or_else(|| perr(format!("{at}.tenantId"), "is required"))?;
    let tenant_id = TenantId::parse(tenant_raw).map_err(|r| perr(format!("{at}.tenantId"), r))?;
    let id: PartnerId = match string(o, at, "id")? {
        Some(s) => s
            .parse()
            .map_err(|e: InvalidInput| perr(format!("{at}.id"), e.reason))?,
        None => tenant_id
            .to_string()
            .parse()
            .expect("a GUID is a path-safe partner id"),
    };
    if id.is_default() {
        return Err(perr(
            format!("{at}.id"),
            format!(
                "{:?} is reserved for the single-tenant settings (no PARTNERS); choose another id",
                PartnerId::DEFAULT_STR
            ),
        ));
    }
    let credential = credential(o, at, tenant_id, setting_is_set)?;
    let mut plan = defaults.clone();
    if let Some(kinds) = list(o, at, "kinds", str::parse::<ExportKind>)? {
        if kinds.is_empty() {
            return Err(perr(format!("{at}.kinds"), "lists no export kind"));
        }
        plan.kinds = kinds;
    }
    if let Some(a) = string(o, at, "attributeSet")? {
        plan.attribute_set = a
            .parse::<AttributeSet>()
            .map_err(|e| perr(format!("{at}.attributeSet"), e.reason))?;
    }
    if let Some(p) = list(o, at, "unbilledPeriods", str::parse::<BillingPeriod>)? {
        plan.periods = p;
    }
    if let Some(c) = list(o, at, "currencies", str::parse::<CurrencyCode>)? {
        plan.currencies = c;
    }
    if let Some(ids) = list(o, at, "invoiceIds", str::parse::<InvoiceId>)? {
        plan.invoice_ids = ids;
    }
    if let Some(d) = string(o, at, "invoiceDiscovery")? {
        plan.discover_invoices = match d.to_ascii_lowercase().as_str() {
            "partner-center" => true,
            "off" => false,
            other => {
                return Err(perr(
                    format!("{at}.invoiceDiscovery"),
                    format!("{other:?}: expected partner-center or off"),
                ))
            }
        };
    }
    let prefix = string(o, at, "destinationPrefix")?.unwrap_or(id.as_str());
    let destination_prefix = ObjectPath::new(prefix.trim_matches('/'))
        .map_err(|e| perr(format!("{at}.destinationPrefix"), e.to_string()))?;
    if destination_prefix.as_str().starts_with('_') {
        return Err(perr(
            format!("{at}.destinationPrefix"),
            "must name a folder not starting with '_' (the ledger's)",
        ));
    }
    let max_concurrency = match o.get("maxConcurrency") {
        None | Some(Value::Null) => DEFAULT_PARTNER_CONCURRENCY,
        Some(v) => match v.as_u64() {
            Some(n @ 1..) if n as usize <= MAX_PARTNER_CONCURRENCY => n as usize,
            _ => {
                return Err(perr(
                    format!("{at}.maxConcurrency"),
                    format!("{v} is not a whole number from 1 to {MAX_PARTNER_CONCURRENCY}"),
                ))
            }
        },
    };
    Ok(PartnerConfig {
        id,
        tenant_id: Some(tenant_id),
        credential,
        plan,
        destination_prefix: Some(destination_prefix),
        max_concurrency: Some(max_concurrency),
    })
}

/// An app setting name: what Azure App Service accepts, and nothing a secret usually looks like.
fn setting_name(path: &str, s: &str) -> Result<String, PartnerError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(s.to_string())
    } else {
        // Never echo the value: it may be the secret itself.
        Err(perr(
            path,
            "must be the NAME of an app setting holding the secret (letters, digits, '_'), not the secret or a Key Vault reference itself",
        ))
    }
}

/// A secret written into the partner list itself is refused: only setting names belong there.
fn refuse_literal_secrets(c: &Map<String, Value>, at: &str) -> Result<(), PartnerError> {
    for k in c.keys() {
        if LITERAL_SECRET_FIELDS.contains(&k.to_ascii_lowercase().as_str()) {
            return Err(perr(
                format!("{at}.{k}"),
                "secrets are never written in the partner list: put the secret in an app setting (a Key Vault reference is best) and name that setting in secretSetting, certificateSetting or certificatePathSetting",
            ));
        }
    }
    Ok(())
}

/// The GUID in `field`, hyphenated, if the field is there.
fn guid(c: &Map<String, Value>, at: &str, field: &str) -> Result<Option<String>, PartnerError> {
    string(c, at, field)?
        .map(|id| {
            uuid::Uuid::try_parse(id)
                .map(|u| u.hyphenated().to_string())
                .map_err(|_| perr(format!("{at}.{field}"), format!("{id:?} is not a GUID")))
        })
        .transpose()
}

/// The fields of a `client-certificate` credential.
const CERTIFICATE_FIELDS: &[&str] = &[
    "kind",
    "clientId",
    "certificateSetting",
    "certificatePathSetting",
];

fn credential(
    o: &Map<String, Value>,
    at: &str,
    tenant: TenantId,
    setting_is_set: &dyn Fn(&str) -> bool,
) -> Result<PartnerCredential, PartnerError> {
    let at = format!("{at}.credential");
    let c = o
        .get("credential")
        .ok_or_else(|| perr(&at, "is required"))?
        .as_object()
        .ok_or_else(|| perr(&at, "must be an object"))?;
    refuse_literal_secrets(c, &at)?;
    let kind = string(c, &at, "kind")?
        .ok_or_else(|| perr(format!("{at}.kind"), "is required"))?
        .to_ascii_lowercase();
    let client_id = |required: bool| -> Result<Option<String>, PartnerError> {
        match guid(c, &at, "clientId")? {
            Some(id) => Ok(Some(id)),
            None if required => Err(perr(
                format!("{at}.clientId"),
                format!("is required for kind {kind}"),
            )),
            None => Ok(None),
        }
    };
    let reference = |field: &str| -> Result<Option<String>, PartnerError> {
        let path = format!("{at}.{field}");
        let Some(name) = string(c, &at, field)? else {
            return Ok(None);
        };
        let name = setting_name(&path, name)?;
        if !setting_is_set(&name) {
            return Err(perr(path, format!("app setting {name} is not set")));
        }
        Ok(Some(name))
    };
    let tenant_id = tenant.to_string();
    let (kind, secret, known): (CredentialKind, Option<SecretReference>, &[&str]) =
        match kind.as_str() {
            "managed-identity" => (
                CredentialKind::ManagedIdentity {
                    client_id: client_id(false)?,
                },
                None,
                &["kind", "clientId"],
            ),
            "federated-managed-identity" => {
                let client_id = client_id(true)?.expect("required");
                let identity_client_id = guid(c, &at, "managedIdentityClientId")?;
                (
                    CredentialKind::FederatedManagedIdentity {
                        tenant_id,
                        client_id,
                        identity_client_id,
                    },
                    None,
                    &["kind", "clientId", "managedIdentityClientId"],
                )
            }
            "workload-identity" => (CredentialKind::WorkloadIdentity, None, &["kind"]),
            "azure-cli" => (CredentialKind::AzureCli, None, &["kind"]),
            "client-secret" => {
                let client_id = client_id(true)?.expect("required");
                let name = reference("secretSetting")?.ok_or_else(|| {
                    perr(
                        format!("{at}.secretSetting"),
                        "is required for kind client-secret: the NAME of the app setting holding the secret",
                    )
                })?;
                (
                    CredentialKind::ClientSecret {
                        tenant_id,
                        client_id,
                    },
                    Some(SecretReference::ClientSecret(name)),
                    &["kind", "clientId", "secretSetting"],
                )
            }
            "client-certificate" => {
                let client_id = client_id(true)?.expect("required");
                let secret = match (
                    reference("certificateSetting")?,
                    reference("certificatePathSetting")?,
                ) {
                    (Some(n), None) => SecretReference::Certificate(n),
                    (None, Some(n)) => SecretReference::CertificatePath(n),
                    _ => {
                        return Err(perr(
                            format!("{at}.certificateSetting"),
                            "kind client-certificate needs exactly one of certificateSetting or certificatePathSetting",
                        ))
                    }
                };
                (
                    CredentialKind::ClientCertificate {
                        tenant_id,
                        client_id,
                    },
                    Some(secret),
                    CERTIFICATE_FIELDS,
                )
            }
            other => {
                return Err(perr(
                    format!("{at}.kind"),
                    format!("{other:?}: expected federated-managed-identity, managed-identity, client-secret, client-certificate, workload-identity or azure-cli"),
                ))
            }
        };
    no_unknown(c, &at, known)?;
    Ok(PartnerCredential {
        kind,
        secret,
        secrets: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::BillingMonth;

    const T1: &str = "11111111-1111-1111-1111-111111111111";
    const T2: &str = "22222222-2222-2222-2222-222222222222";

    fn defaults() -> PlanConfig {
        PlanConfig {
            kinds: ExportKind::ALL.to_vec(),
            attribute_set: AttributeSet::Full,
            invoice_ids: vec![],
            currencies: vec!["USD".parse().unwrap()],
            periods: vec![BillingPeriod::Current],
            discover_invoices: true,
            billed_lookback_months: 3,
            invoices_missing_day: 12,
            billed_history_from: "2022-09".parse::<BillingMonth>().unwrap(),
            max_attempts: 3,
            no_data_retry_after: None,
        }
    }

    fn parse_with(json: &str, set: &[&str]) -> Result<Vec<PartnerConfig>, PartnerError> {
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        parse(json, &defaults(), &|n| set.iter().any(|s| s == n))
    }

    fn two() -> String {
        format!(
            r#"{{"partners": [
              {{"id": "contoso", "tenantId": "{T1}",
                "credential": {{"kind": "client-secret", "clientId": "{T2}", "secretSetting": "CONTOSO_GRAPH_SECRET"}},
                "kinds": ["billedUsage", "unbilled-usage"], "attributeSet": "basic",
                "unbilledPeriods": ["current", "last"], "currencies": ["eur"],
                "destinationPrefix": "/csp/contoso/", "invoiceDiscovery": "off",
                "invoiceIds": ["g0001"], "maxConcurrency": 2}},
              {{"tenantId": "{T2}", "credential": {{"kind": "managed-identity"}}}}
            ]}}"#
        )
    }

    #[test]
    fn a_full_and_a_minimal_partner() {
        let p = parse_with(&two(), &["CONTOSO_GRAPH_SECRET"]).unwrap();
        assert_eq!(p.len(), 2);
        let c = &p[0];
        assert_eq!(c.id.as_str(), "contoso");
        assert_eq!(c.tenant_id.unwrap().to_string(), T1);
        assert_eq!(
            c.credential.kind,
            CredentialKind::ClientSecret {
                tenant_id: T1.into(),
                client_id: T2.into()
            }
        );
        assert_eq!(
            c.credential.secret,
            Some(SecretReference::ClientSecret("CONTOSO_GRAPH_SECRET".into()))
        );
        assert_eq!(
            c.plan.kinds,
            vec![ExportKind::BilledUsage, ExportKind::UnbilledUsage]
        );
        assert_eq!(c.plan.attribute_set, AttributeSet::Basic);
        assert_eq!(c.plan.currencies, vec!["EUR".parse().unwrap()]);
        assert_eq!(c.plan.periods.len(), 2);
        assert!(!c.plan.discover_invoices);
        assert_eq!(c.plan.invoice_ids, vec!["G0001".parse().unwrap()]);
        assert_eq!(
            c.destination_prefix.as_ref().unwrap().as_str(),
            "csp/contoso"
        );
        assert_eq!(c.max_concurrency, Some(2));
        // The minimal one: id from the tenant, everything else from the EXPORT_* settings.
        let m = &p[1];
        assert_eq!(m.id.as_str(), T2);
        assert_eq!(m.destination_prefix.as_ref().unwrap().as_str(), T2);
        assert_eq!(m.plan, defaults());
        assert_eq!(m.max_concurrency, Some(DEFAULT_PARTNER_CONCURRENCY));
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("[]", "(document)"),
            (r#"{"partners": []}"#, "partners"),
            (r#"{"partner": []}"#, "partner"),
            (
                r#"{"partners": [{"tenantId": "x", "credential": {"kind": "managed-identity"}}]}"#,
                "partners[0].tenantId",
            ),
            (
                &format!(r#"{{"partners": [{{"tenantId": "{T1}"}}]}}"#),
                "partners[0].credential",
            ),
            (
                &format!(
                    r#"{{"partners": [{{"tenantId": "{T1}", "credential": {{"kind": "managed-identity"}}, "kinds": ["billedUsage", "nope"]}}]}}"#
                ),
                "partners[0].kinds[1]",
            ),
            (
                &format!(
                    r#"{{"partners": [{{"tenantId": "{T1}", "credential": {{"kind": "managed-identity"}}, "currencies": ["dollars"]}}]}}"#
                ),
                "partners[0].currencies[0]",
            ),
            (
                &format!(
                    r#"{{"partners": [{{"tenantId": "{T1}", "credential": {{"kind": "managed-identity"}}, "maxConcurrency": 0}}]}}"#
                ),
                "partners[0].maxConcurrency",
            ),
            (
                &format!(
                    r#"{{"partners": [{{"tenantId": "{T1}", "credential": {{"kind": "managed-identity"}}, "colour": "red"}}]}}"#
                ),
                "partners[0].colour",
            ),
            (
                &format!(
                    r#"{{"partners": [{{"id": "a/b", "tenantId": "{T1}", "credential": {{"kind": "managed-identity"}}}}]}}"#
                ),
                "partners[0].id",
            ),
            (
                &format!(
                    r#"{{"partners": [{{"id": "default", "tenantId": "{T1}", "credential": {{"kind": "managed-identity"}}}}]}}"#
                ),
                "partners[0].id",
            ),
            (
                &format!(
                    r#"{{"partners": [{{"tenantId": "{T1}", "credential": {{"kind": "managed-identity"}}, "destinationPrefix": "../x"}}]}}"#
                ),
                "partners[0].destinationPrefix",
            ),
            (
                &format!(
                    r#"{{"partners": [{{"tenantId": "{T1}", "credential": {{"kind": "client-secret", "clientId": "{T2}"}}}}]}}"#
                ),
                "partners[0].credential.secretSetting",
            ),
            (
                &format!(
                    r#"{{"partners": [{{"tenantId": "{T1}", "credential": {{"kind": "client-secret", "clientId": "{T2}", "secretSetting": "MISSING"}}}}]}}"#
                ),
                "partners[0].credential.secretSetting",
            ),
            (
                &format!(
                    r#"{{"partners": [{{"tenantId": "{T1}", "credential": {{"kind": "client-certificate", "clientId": "{T2}"}}}}]}}"#
                ),
                "partners[0].credential.certificateSetting",
            ),
            (
                &format!(
                    r#"{{"partners": [{{"tenantId": "{T1}", "credential": {{"kind": "password"}}}}]}}"#
                ),
                "partners[0].credential.kind",
            ),
        ];
        for (json, field) in cases {
            let e = parse_with(json, &["SET"]).unwrap_err();
            assert_eq!(e.path, *field, "{json}: {e}");
        }
        let dup = format!(
            r#"{{"partners": [{{"id": "a", "tenantId": "{T1}", "credential": {{"kind": "managed-identity"}}}},
                             {{"id": "A", "tenantId": "{T2}", "credential": {{"kind": "managed-identity"}}}}]}}"#
        );
        assert_eq!(parse_with(&dup, &[]).unwrap_err().path, "partners[1].id");
        let same_folder = format!(
            r#"{{"partners": [{{"id": "a", "tenantId": "{T1}", "credential": {{"kind": "managed-identity"}}}},
                             {{"id": "b", "tenantId": "{T2}", "credential": {{"kind": "managed-identity"}}, "destinationPrefix": "a"}}]}}"#
        );
        assert_eq!(
            parse_with(&same_folder, &[]).unwrap_err().path,
            "partners[1].destinationPrefix"
        );
    }

    #[test]
    fn secrets_are_references_never_literals() {
        let literal = format!(
            r#"{{"partners": [{{"tenantId": "{T1}", "credential": {{"kind": "client-secret", "clientId": "{T2}", "clientSecret": "s3cr3t~value"}}}}]}}"#
        );
        let e = parse_with(&literal, &[]).unwrap_err();
        assert_eq!(e.path, "partners[0].credential.clientSecret");
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        // A secret (or a Key Vault reference) pasted where a setting name belongs.
        for value in [
            "abc~DEF.123-xyz",
            "@Microsoft.KeyVault(SecretUri=https://kv/x)",
        ] {
            let pasted = format!(
                r#"{{"partners": [{{"tenantId": "{T1}", "credential": {{"kind": "client-secret", "clientId": "{T2}", "secretSetting": "{value}"}}}}]}}"#
            );
            let e = parse_with(&pasted, &[]).unwrap_err();
            assert_eq!(e.path, "partners[0].credential.secretSetting");
            assert!(!e.to_string().contains(value), "{e}");
        }
    }
}
