//! `Config::load`: defaults, each setting's errors, credentials and partner lists.

use super::*;
use std::collections::HashMap;

fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(&Settings::new(move |k| m.get(k).cloned()))
}

#[test]
fn secrets_are_read_here_as_values_per_credential() {
    let json = r#"{"partners": [{"id": "contoso",
        "tenantId": "11111111-1111-1111-1111-111111111111",
        "credential": {"kind": "client-secret",
            "clientId": "22222222-2222-2222-2222-222222222222",
            "secretSetting": "CONTOSO_GRAPH_SECRET"}}]}"#;
    let c = load(&[
        (
            "DESTINATION_ACCOUNT_URL",
            "https://acct.blob.core.windows.net",
        ),
        ("GRAPH_CLIENT_SECRET", "app-secret"),
        ("CONTOSO_GRAPH_SECRET", "contoso-secret"),
        ("AZURE_AUTHORITY_HOST", "https://login.example"),
        ("PARTNERS", json),
    ])
    .unwrap();
    let app = &c.credentials.graph_secrets;
    assert_eq!(
        app.get(s::GRAPH_CLIENT_SECRET).as_deref(),
        Some("app-secret")
    );
    // A listed partner gets the setting its reference names, never the app's own secret.
    let partner = &c.partners[0].credential.secrets;
    assert_eq!(
        partner.get(s::GRAPH_CLIENT_SECRET).as_deref(),
        Some("contoso-secret")
    );
    assert_eq!(
        partner.get(AUTHORITY_HOST).as_deref(),
        Some("https://login.example")
    );
    assert!(
        !format!("{c:?}").contains("secret\""),
        "Debug shows names only"
    );
    assert!(!format!("{c:?}").contains("contoso-secret"));
}

#[test]
fn defaults_need_only_the_destination() {
    let c = load(&[(
        "DESTINATION_ACCOUNT_URL",
        "https://acct.blob.core.windows.net",
    )])
    .unwrap();
    assert_eq!(c.graph.base_url.as_str(), "https://graph.microsoft.com/");
    assert_eq!(c.plan.kinds.len(), 4);
    assert!(c.plan.currencies.is_empty(), "learned from the invoices");
    assert_eq!(c.plan.max_attempts, 3);
    assert_eq!(
        c.plan.no_data_retry_after,
        Some(Duration::from_secs(72 * 3600))
    );
    assert_eq!(c.pipeline.poll_deadline, Duration::from_secs(24 * 3600));
    assert_eq!(
        c.credentials.azure,
        CredentialKind::ManagedIdentity { client_id: None }
    );
    assert_eq!(c.credentials.graph, c.credentials.azure);
    assert!(c.json_logs);
    assert!(c.servicebus_endpoint.is_none());
}

#[test]
fn errors_name_the_setting() {
    let e = load(&[("DESTINATION_KIND", "filesystem")]).unwrap_err();
    assert_eq!(e.name, "DESTINATION_DIRECTORY");
    let e = load(&[
        ("DESTINATION_KIND", "filesystem"),
        ("DESTINATION_DIRECTORY", "/tmp/x"),
        ("EXPORT_KINDS", "billedUsage,nonsense"),
    ])
    .unwrap_err();
    assert_eq!(e.name, "EXPORT_KINDS");
    let e = load(&[
        ("DESTINATION_KIND", "filesystem"),
        ("DESTINATION_DIRECTORY", "/tmp/x"),
        ("POLL_DEADLINE_MINUTES", "soon"),
    ])
    .unwrap_err();
    assert_eq!(e.name, "POLL_DEADLINE_MINUTES");
    let e = load(&[
        ("DESTINATION_KIND", "filesystem"),
        ("DESTINATION_DIRECTORY", "/tmp/x"),
        ("DESTINATION_PREFIX", "a/../b"),
    ])
    .unwrap_err();
    assert_eq!(e.name, "DESTINATION_PREFIX");
}

#[test]
fn source_storage_hosts() {
    let dest = ("DESTINATION_ACCOUNT_URL", "https://a.blob.core.windows.net");
    let c = load(&[dest]).unwrap();
    let azure = url::Url::parse("https://x.blob.core.windows.net/c").unwrap();
    let gov = url::Url::parse("https://x.blob.core.usgovcloudapi.net/c").unwrap();
    assert!(c.graph.source_hosts.check(&azure).is_ok());
    assert!(c.graph.source_hosts.check(&gov).is_err());
    let c = load(&[
        dest,
        (
            "SOURCE_STORAGE_HOSTS",
            "*.blob.core.usgovcloudapi.net, *.blob.core.chinacloudapi.cn",
        ),
    ])
    .unwrap();
    assert!(c.graph.source_hosts.check(&gov).is_ok());
    assert!(c.graph.source_hosts.check(&azure).is_err());
    for bad in ["https://x.blob.core.windows.net", "*", "*.net", "a.b:443"] {
        let e = load(&[dest, ("SOURCE_STORAGE_HOSTS", bad)]).unwrap_err();
        assert_eq!(e.name, "SOURCE_STORAGE_HOSTS", "{bad}");
    }
    let e = load(&[dest, ("SOURCE_STORAGE_HOSTS", " , ")]).unwrap_err();
    assert_eq!(e.name, "SOURCE_STORAGE_HOSTS");
}

#[test]
fn keyed_alternatives() {
    let c = load(&[
        ("DESTINATION_ACCOUNT_URL", "https://a.blob.core.windows.net"),
        (
            "ServiceBusConnection",
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=k",
        ),
        ("EVENTGRID_TOPIC_KEY", "topic-key"),
    ])
    .unwrap();
    assert_eq!(
        c.servicebus_endpoint.unwrap().as_str(),
        "https://ns.servicebus.windows.net/"
    );
    assert_eq!(c.servicebus_key.unwrap().name, "send");
    assert_eq!(c.eventgrid_key.unwrap().expose(), "topic-key");
    let e = load(&[
        ("DESTINATION_ACCOUNT_URL", "https://a.blob.core.windows.net"),
        ("ServiceBusConnection", "Endpoint=nope"),
    ])
    .unwrap_err();
    assert_eq!(e.name, "ServiceBusConnection");
    assert!(!e.to_string().contains("SharedAccessKey="), "{e}");
}

#[test]
fn service_bus_from_namespace_or_override() {
    let c = load(&[
        ("DESTINATION_ACCOUNT_URL", "https://a.blob.core.windows.net"),
        (
            "ServiceBusConnection__fullyQualifiedNamespace",
            "ns.servicebus.windows.net",
        ),
    ])
    .unwrap();
    assert_eq!(
        c.servicebus_endpoint.unwrap().as_str(),
        "https://ns.servicebus.windows.net/"
    );
    let c = load(&[
        ("DESTINATION_ACCOUNT_URL", "https://a.blob.core.windows.net"),
        ("SERVICEBUS_ENDPOINT", "http://127.0.0.1:9/"),
    ])
    .unwrap();
    assert_eq!(c.servicebus_endpoint.unwrap().port(), Some(9));
}

#[test]
fn partners_from_a_setting_or_a_file() {
    let dest = ("DESTINATION_ACCOUNT_URL", "https://a.blob.core.windows.net");
    let c = load(&[dest]).unwrap();
    assert!(!c.has_partner_list());
    assert!(c.partners[0].id.is_default());
    assert_eq!(c.partners[0].credential.kind, c.credentials.graph);
    assert_eq!(c.partners[0].plan, c.plan);
    let json = r#"{"partners": [
        {"id": "contoso", "tenantId": "11111111-1111-1111-1111-111111111111",
         "credential": {"kind": "client-secret", "clientId": "22222222-2222-2222-2222-222222222222", "secretSetting": "CONTOSO_SECRET"}},
        {"id": "fabrikam", "tenantId": "33333333-3333-3333-3333-333333333333",
         "credential": {"kind": "managed-identity"}, "currencies": ["EUR"]}]}"#;
    let c = load(&[
        dest,
        ("PARTNERS", json),
        ("CONTOSO_SECRET", "resolved-by-key-vault"),
        ("EXPORT_UNBILLED_CURRENCIES", "USD,GBP"),
    ])
    .unwrap();
    assert!(c.has_partner_list());
    assert_eq!(c.partners.len(), 2);
    assert_eq!(
        c.partners[0].plan.currencies.len(),
        2,
        "EXPORT_* are the defaults"
    );
    assert_eq!(c.partners[1].plan.currencies, vec!["EUR".parse().unwrap()]);
    let e = load(&[dest, ("PARTNERS", json)]).unwrap_err();
    assert_eq!(e.name, "PARTNERS");
    assert_eq!(
        e.to_string(),
        "app setting PARTNERS: partners[0].credential.secretSetting: app setting CONTOSO_SECRET is not set"
    );
    let e = load(&[dest, ("PARTNERS", r#"{"partners": [{"tenantId": "x"}]}"#)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "app setting PARTNERS: partners[0].tenantId: \"x\" is not a GUID"
    );

    let dir = std::env::temp_dir().join(format!("partners-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("partners.json");
    std::fs::write(&file, json).unwrap();
    let path = file.to_str().unwrap();
    let c = load(&[dest, ("PARTNERS_FILE", path), ("CONTOSO_SECRET", "x")]).unwrap();
    assert_eq!(c.partners[1].id.as_str(), "fabrikam");
    let e = load(&[dest, ("PARTNERS_FILE", path), ("PARTNERS", json)]).unwrap_err();
    assert_eq!(e.name, "PARTNERS_FILE");
    let e = load(&[dest, ("PARTNERS_FILE", "/nonexistent/partners.json")]).unwrap_err();
    assert_eq!(e.name, "PARTNERS_FILE");
    std::fs::remove_dir_all(&dir).unwrap();
}
