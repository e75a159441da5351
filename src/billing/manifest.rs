//! Parsing and validating a manifest. It comes from outside, so every field is checked and
//! bounded before the pipeline builds URLs or paths from it.

use serde_json::Value;
use url::Url;

use super::client::BillingError;
use super::model::{Manifest, ManifestBlob};
use crate::auth::Secret;
use crate::runtime::codec::parse_timestamp;

/// More partitions than any real export; beyond this the manifest is refused.
pub const MAX_BLOBS: usize = 100_000;
pub const MAX_BLOB_NAME: usize = 1024;
const MAX_FIELD: usize = 4096;
/// `dataFormat` values seen in docs and in the wild; both mean gzip JSON lines.
pub const KNOWN_DATA_FORMATS: [&str; 2] = ["compressedJSON", "compressedJSONLines"];

fn invalid(msg: impl Into<String>) -> BillingError {
    BillingError::InvalidResponse(format!("manifest: {}", msg.into()))
}

fn string(v: &Value, field: &str, required: bool) -> Result<String, BillingError> {
    match v.get(field) {
        Some(Value::String(s)) if s.len() <= MAX_FIELD => Ok(s.clone()),
        Some(Value::String(_)) => Err(invalid(format!("{field} is longer than {MAX_FIELD} bytes"))),
        Some(Value::Number(n)) => Ok(n.to_string()),
        None | Some(Value::Null) if !required => Ok(String::new()),
        None | Some(Value::Null) => Err(invalid(format!("{field} is missing"))),
        Some(_) => Err(invalid(format!("{field} must be a string"))),
    }
}

/// Whether `url`'s host is a loopback address (local mode's sandbox serves plain http there).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A blob name must stay inside `rootDirectory`: relative, no `..`, nothing that would change
/// the URL's meaning.
pub fn validate_blob_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_BLOB_NAME {
        return Err(format!("blob name must be 1 to {MAX_BLOB_NAME} bytes"));
    }
    if name.starts_with('/') {
        return Err("blob name must be relative".into());
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '\\' | '?' | '#' | '%'))
    {
        return Err("blob name has a forbidden character".into());
    }
    if name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("blob name has an empty, '.' or '..' segment".into());
    }
    Ok(())
}

fn root_directory(raw: &str, loopback_ok: bool) -> Result<String, BillingError> {
    let url = Url::parse(raw)
        .map_err(|e| invalid(format!("rootDirectory is not an absolute URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if loopback_ok && is_loopback(&url) => {}
        s => return Err(invalid(format!("rootDirectory must be https, not {s}"))),
    }
    if url.query().is_some() || url.fragment().is_some() || raw.contains('?') || raw.contains('#') {
        return Err(invalid("rootDirectory must not carry a query or fragment"));
    }
    if url.host_str().is_none() {
        return Err(invalid("rootDirectory has no host"));
    }
    // Kept exactly as sent: it contains `=` in path segments that must not be re-encoded.
    Ok(raw.trim_end_matches('/').to_string())
}

/// Parses a `microsoft.graph.partners.billing.manifest` object.
pub fn parse_manifest(v: &Value, loopback_ok: bool) -> Result<Manifest, BillingError> {
    if !v.is_object() {
        return Err(invalid("not a JSON object"));
    }
    let id = string(v, "id", true)?;
    let etag = string(v, "eTag", true)?;
    if id.is_empty() || etag.is_empty() {
        return Err(invalid("id and eTag must not be empty"));
    }
    let root = root_directory(&string(v, "rootDirectory", true)?, loopback_ok)?;
    let sas = string(v, "sasToken", true)?;
    let sas = sas.trim_start_matches('?');
    if sas.contains('#') || sas.chars().any(char::is_whitespace) {
        return Err(invalid("sasToken is not a query string"));
    }
    let data_format = string(v, "dataFormat", false)?;
    if !KNOWN_DATA_FORMATS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(&data_format))
    {
        tracing::warn!(data_format = %data_format, "manifest dataFormat is not one we know; treating the blobs as gzip JSON lines");
    }
    let blobs_json = match v.get("blobs") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => return Err(invalid("blobs is missing")),
        Some(_) => return Err(invalid("blobs must be an array")),
    };
    if blobs_json.len() > MAX_BLOBS {
        return Err(invalid(format!(
            "{} blobs is more than the {MAX_BLOBS} accepted",
            blobs_json.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut blobs = Vec::with_capacity(blobs_json.len());
    for (i, b) in blobs_json.iter().enumerate() {
        let name =
            string(b, "name", true).map_err(|_| invalid(format!("blobs[{i}].name is missing")))?;
        validate_blob_name(&name).map_err(|e| invalid(format!("blobs[{i}]: {e}")))?;
        if !seen.insert(name.clone()) {
            return Err(invalid(format!("blobs[{i}]: duplicate name")));
        }
        blobs.push(ManifestBlob {
            name,
            partition_value: string(b, "partitionValue", false)?,
        });
    }
    let blob_count = v.get("blobCount").and_then(Value::as_u64);
    if blob_count.is_some_and(|c| c != blobs.len() as u64) {
        tracing::warn!(blob_count = ?blob_count, listed = blobs.len(), "manifest blobCount disagrees with blobs[]; using blobs[]");
    }
    Ok(Manifest {
        id,
        schema_version: string(v, "schemaVersion", false)?,
        data_format,
        created_date_time: v
            .get("createdDateTime")
            .and_then(Value::as_str)
            .and_then(parse_timestamp),
        etag,
        partner_tenant_id: string(v, "partnerTenantId", false)?,
        root_directory: root,
        sas_token: Secret::new(sas),
        partition_type: string(v, "partitionType", false)?,
        blob_count: blobs.len() as u32,
        blobs,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// The full example of the manifest reference, as documented (GUIDs and signature shortened there too).
    pub fn doc_example() -> Value {
        json!({
          "id": "6fe687d7-1e0f-4bd6-9091-4672691f64bc",
          "schemaVersion": "1",
          "dataFormat": "compressedJSON",
          "createdDateTime": "2023-03-09T06:34:34.87Z",
          "eTag": "WYjLro78HdMg6vUWR",
          "partnerTenantId": "0e195b37-4574-4539-bc42-0e539b9684c0",
          "rootDirectory": "https://adlsreconbuprodeastus201.blob.core.windows.net/billedusagefastpath/v1/PartnerTenantId=0e195b37-4574-4539-bc42-0e539b9684c0/BillingMonth=202310/InvoiceId=G031809528/InvoiceVersion=202311/Fragment=basic/PartitionType=default",
          "sasToken": "skoid=0c414a25-...&sktid=975f013f-...&skt=2023-12-13T00%3A37%3A17Z&ske=2023-12-14T00%3A37%3A17Z&sks=b&skv=2021-08-06&sv=2021-08-06&se=2023-12-13T12%3A37%3A17Z&sr=d&sp=rl&sdd=7&sig=...",
          "partitionType": "Default",
          "blobCount": 1,
          "blobs": [ { "name": "part-00049-b016029b-a7a7-4c46-9b5e-c925ac317ac6.c000.json.gz", "partitionValue": "default" } ]
        })
    }

    #[test]
    fn documented_example_parses_and_builds_blob_urls_without_reencoding() {
        let m = parse_manifest(&doc_example(), false).unwrap();
        assert_eq!(m.etag, "WYjLro78HdMg6vUWR");
        assert_eq!(m.blobs.len(), 1);
        let url = m.blob_url(&m.blobs[0]).unwrap();
        let s = url.as_str();
        assert!(
            s.contains("/BillingMonth=202310/InvoiceId=G031809528/"),
            "{s}"
        );
        assert!(
            s.contains("skt=2023-12-13T00%3A37%3A17Z"),
            "SAS must not be re-encoded: {s}"
        );
        assert!(s.ends_with("&sdd=7&sig=..."), "{s}");
        assert_eq!(m.sas_expiry().unwrap().hour(), 12);
        assert!(
            !format!("{m:?}").contains("sktid"),
            "Debug must not print the SAS"
        );
    }

    #[test]
    fn sas_with_leading_question_mark_and_unknown_format() {
        let mut v = doc_example();
        v["sasToken"] = json!("?sv=2021-08-06&sig=abc");
        v["dataFormat"] = json!("parquet");
        v["blobCount"] = json!(7);
        let m = parse_manifest(&v, false).unwrap();
        assert_eq!(m.sas_token.expose(), "sv=2021-08-06&sig=abc");
        assert_eq!(m.blob_count, 1, "blobs[] wins over blobCount");
    }

    #[test]
    fn hostile_manifests_are_refused() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "traversal",
                Box::new(|v| v["blobs"][0]["name"] = json!("../other/x.json.gz")),
            ),
            (
                "absolute",
                Box::new(|v| v["blobs"][0]["name"] = json!("/x.json.gz")),
            ),
            (
                "query",
                Box::new(|v| v["blobs"][0]["name"] = json!("x.json.gz?sig=evil")),
            ),
            (
                "encoded",
                Box::new(|v| v["blobs"][0]["name"] = json!("%2e%2e/x")),
            ),
            (
                "backslash",
                Box::new(|v| v["blobs"][0]["name"] = json!("a\\b")),
            ),
            (
                "http root",
                Box::new(|v| v["rootDirectory"] = json!("http://evil.example/c/d")),
            ),
            (
                "query root",
                Box::new(|v| v["rootDirectory"] = json!("https://a.blob.core.windows.net/c?x=1")),
            ),
            (
                "relative root",
                Box::new(|v| v["rootDirectory"] = json!("c/d")),
            ),
            (
                "no etag",
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("eTag");
                }),
            ),
            (
                "no blobs",
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("blobs");
                }),
            ),
            (
                "dup",
                Box::new(|v| v["blobs"] = json!([{"name": "a"}, {"name": "a"}])),
            ),
            (
                "too many",
                Box::new(|v| v["blobs"] = Value::Array(vec![json!({"name": "a"}); MAX_BLOBS + 1])),
            ),
            (
                "long name",
                Box::new(|v| v["blobs"][0]["name"] = json!("a".repeat(MAX_BLOB_NAME + 1))),
            ),
        ];
        for (what, mutate) in cases {
            let mut v = doc_example();
            mutate(&mut v);
            let e = parse_manifest(&v, false).expect_err(what);
            assert!(
                !e.to_string().contains("sig="),
                "{what}: error leaks the SAS"
            );
        }
        // Loopback http is accepted only in local mode.
        let mut v = doc_example();
        v["rootDirectory"] = json!("http://127.0.0.1:9999/blob/c/d");
        assert!(parse_manifest(&v, false).is_err());
        assert!(parse_manifest(&v, true).is_ok());
    }
}
