//! Shared-access-key authorization, the keyed alternative to Entra tokens: Service Bus
//! connection strings (`SharedAccessSignature sr=…&sig=…&se=…&skn=…`, HMAC-SHA256 over the
//! URL-encoded resource URI and expiry) and Event Grid topic keys (`aeg-sas-key`). Managed
//! identity stays the default; these exist for partners who cannot use it.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

use crate::auth::Secret;

/// How long a generated Service Bus SAS token is valid.
pub const TOKEN_LIFETIME_SECS: u64 = 3600;

#[derive(Debug, Clone, PartialEq)]
pub struct SharedAccessKey {
    pub name: String,
    pub key: Secret,
}

/// The parts of a Service Bus connection string we use.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionString {
    /// `https://{namespace}` (from `Endpoint=sb://{namespace}/`).
    pub endpoint: Url,
    pub key: SharedAccessKey,
}

/// Parses `Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…`.
/// Errors never echo the key.
pub fn parse_connection_string(s: &str) -> Result<ConnectionString, String> {
    let mut endpoint = None;
    let mut name = None;
    let mut key = None;
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err("connection string parts must be Name=Value".into());
        };
        match k.to_ascii_lowercase().as_str() {
            "endpoint" => endpoint = Some(v.to_string()),
            "sharedaccesskeyname" => name = Some(v.to_string()),
            "sharedaccesskey" => key = Some(v.to_string()),
            _ => {}
        }
    }
    let endpoint = endpoint.ok_or("the connection string has no Endpoint")?;
    let host = endpoint
        .trim_end_matches('/')
        .strip_prefix("sb://")
        .ok_or("Endpoint must look like sb://{namespace}.servicebus.windows.net/")?;
    if host.is_empty() || host.contains('/') {
        return Err("Endpoint has no namespace host".into());
    }
    Ok(ConnectionString {
        endpoint: Url::parse(&format!("https://{host}")).map_err(|e| format!("Endpoint: {e}"))?,
        key: SharedAccessKey {
            name: name.ok_or("the connection string has no SharedAccessKeyName")?,
            key: Secret::new(key.ok_or("the connection string has no SharedAccessKey")?),
        },
    })
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn signature(resource_encoded: &str, expiry: u64, key: &Secret) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{resource_encoded}\n{expiry}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The canonical resource a token is for: scheme-less-insensitive, lower-case, no query.
fn resource_of(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.as_str().trim_end_matches('/').to_ascii_lowercase()
}

/// A `SharedAccessSignature …` header value for `resource`, valid until `expiry` (unix seconds).
pub fn service_bus_token(resource: &Url, key: &SharedAccessKey, expiry: u64) -> String {
    let sr = encode(&resource_of(resource));
    let sig = encode(&signature(&sr, expiry, &key.key));
    format!(
        "SharedAccessSignature sr={sr}&sig={sig}&se={expiry}&skn={}",
        encode(&key.name)
    )
}

/// Checks a `SharedAccessSignature` header for a request to `target` (the stand-in's side):
/// known key name, valid signature, not expired, and `sr` a prefix of the target.
pub fn verify_service_bus_token(
    header: &str,
    target: &Url,
    keys: &[SharedAccessKey],
    now: u64,
) -> Result<(), String> {
    let q = header
        .strip_prefix("SharedAccessSignature ")
        .ok_or("not a SharedAccessSignature")?;
    let mut sr = None;
    let mut sig = None;
    let mut se = None;
    let mut skn = None;
    for kv in q.split('&') {
        match kv.split_once('=') {
            Some(("sr", v)) => sr = Some(v.to_string()),
            Some(("sig", v)) => sig = Some(v.to_string()),
            Some(("se", v)) => se = v.parse::<u64>().ok(),
            Some(("skn", v)) => skn = Some(crate::billing::wire::percent_decode(v)),
            _ => {}
        }
    }
    let (sr, sig, se, skn) = (
        sr.ok_or("sr is missing")?,
        sig.ok_or("sig is missing")?,
        se.ok_or("se is missing")?,
        skn.ok_or("skn is missing")?,
    );
    if se <= now {
        return Err("the token has expired".into());
    }
    let key = keys
        .iter()
        .find(|k| k.name == skn)
        .ok_or("unknown key name")?;
    if encode(&signature(&sr, se, &key.key)) != sig {
        return Err("the signature does not match".into());
    }
    let resource = crate::billing::wire::percent_decode(&sr);
    let wanted = resource_of(target);
    // `sr` may name the namespace or the entity; compare without scheme (sb:// vs https://).
    let strip = |s: &str| {
        s.split_once("://")
            .map(|(_, r)| r.to_string())
            .unwrap_or_else(|| s.to_string())
    };
    if !strip(&wanted).starts_with(&strip(&resource)) {
        return Err("the token is for another resource".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SharedAccessKey {
        SharedAccessKey {
            name: "sender".into(),
            key: Secret::new("c2VjcmV0LWtleQ=="),
        }
    }

    #[test]
    fn connection_strings() {
        let c = parse_connection_string(
            "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=sender;SharedAccessKey=c2VjcmV0LWtleQ==",
        )
        .unwrap();
        assert_eq!(
            c.endpoint.as_str(),
            "https://contoso.servicebus.windows.net/"
        );
        assert_eq!(c.key, key());
        for bad in [
            "",
            "Endpoint=https://x/;SharedAccessKeyName=a;SharedAccessKey=b",
            "Endpoint=sb://x/;SharedAccessKey=b",
            "nonsense",
        ] {
            let e = parse_connection_string(bad).unwrap_err();
            assert!(!e.contains("c2VjcmV0"), "errors must not echo keys");
        }
    }

    #[test]
    fn tokens_verify_only_with_the_right_key_time_and_resource() {
        let url = Url::parse("https://contoso.servicebus.windows.net/export-operations/messages")
            .unwrap();
        let ns = Url::parse("https://contoso.servicebus.windows.net/").unwrap();
        let t = service_bus_token(&ns, &key(), 2_000);
        assert!(t.starts_with(
            "SharedAccessSignature sr=https%3A%2F%2Fcontoso.servicebus.windows.net&sig="
        ));
        assert!(verify_service_bus_token(&t, &url, &[key()], 1_000).is_ok());
        assert!(
            verify_service_bus_token(&t, &url, &[key()], 2_000).is_err(),
            "expired"
        );
        let other = SharedAccessKey {
            name: "sender".into(),
            key: Secret::new("other"),
        };
        assert!(
            verify_service_bus_token(&t, &url, &[other], 1_000).is_err(),
            "wrong key"
        );
        let elsewhere = Url::parse("https://fabrikam.servicebus.windows.net/q/messages").unwrap();
        assert!(
            verify_service_bus_token(&t, &elsewhere, &[key()], 1_000).is_err(),
            "wrong resource"
        );
        let tampered = t.replace("se=2000", "se=9999");
        assert!(verify_service_bus_token(&tampered, &url, &[key()], 1_000).is_err());
    }
}
