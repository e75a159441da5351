//! Parsing and validating manifests. A manifest decides which URLs we fetch and which paths we
//! write, so it is treated as hostile input: every field is typed, bounded and checked here.
//! Error messages never quote the SAS, the root directory or a blob name (any of them could
//! carry a signature); they name the field and the index instead.

use std::collections::HashSet;

use serde_json::{Map, Value};
use url::Url;

use super::error::BillingError;
use super::model::{Manifest, ManifestBlob};
use super::wire::{optional_str, parse_graph_timestamp};
use crate::auth::{HostPattern, Secret};

/// Most blobs one manifest may list (far above anything observed; bounds memory and fan-out).
pub const MAX_BLOBS: usize = 100_000;
/// Longest blob name Azure Storage accepts.
pub const MAX_BLOB_NAME_BYTES: usize = 1024;
const MAX_ID_LEN: usize = 256;
const MAX_SHORT_LEN: usize = 256;
const MAX_URL_LEN: usize = 2048;
const MAX_SAS_LEN: usize = 8 * 1024;

/// The two `dataFormat` values the docs and real responses show (docs/graph-api.md §3).
const KNOWN_DATA_FORMATS: [&str; 2] = ["compressedJSON", "compressedJSONLines"];

fn invalid(msg: impl Into<String>) -> BillingError {
    BillingError::InvalidManifest(format!("manifest: {}", msg.into()))
}

/// The storage hosts a manifest's `rootDirectory` may point at. Every partition URL is built
/// from that root, and the copy path fetches it (relay) or hands it to Azure Storage as a copy
/// source, so a root elsewhere would make this function, or the partner's storage account,
/// issue requests to any host Graph (or whoever answers as Graph) names.
///
/// Default: Azure Storage blob endpoints (`*.blob.core.windows.net`); the `SOURCE_STORAGE_HOSTS`
/// setting replaces the list (sovereign clouds: `*.blob.core.usgovcloudapi.net`,
/// `*.blob.core.chinacloudapi.cn`). Plain `http` is accepted only for a loopback host, and a
/// loopback host only when it is listed or when it is Graph's own host and Graph itself is on
/// loopback (the local sandbox serves its blobs there; `local --azurite` puts Azurite on the
/// same address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceHosts {
    patterns: Vec<HostPattern>,
    /// Graph's host when Graph is on loopback (local mode and tests).
    loopback_graph_host: Option<String>,
}

/// `SOURCE_STORAGE_HOSTS`' default.
pub const DEFAULT_SOURCE_STORAGE_HOSTS: &[&str] = &["*.blob.core.windows.net"];

impl Default for SourceHosts {
    fn default() -> Self {
        Self::new(
            DEFAULT_SOURCE_STORAGE_HOSTS
                .iter()
                .map(|p| HostPattern::parse(p).expect("static pattern"))
                .collect(),
        )
    }
}

impl SourceHosts {
    pub fn new(patterns: Vec<HostPattern>) -> Self {
        Self {
            patterns,
            loopback_graph_host: None,
        }
    }

    /// Also accepts Graph's own host when `graph_base` is a loopback URL (the local sandbox
    /// serves blobs beside Graph); a public Graph endpoint adds nothing.
    pub fn with_graph_base(mut self, graph_base: &Url) -> Self {
        self.loopback_graph_host = crate::auth::is_loopback(graph_base)
            .then(|| graph_base.host_str().map(str::to_ascii_lowercase))
            .flatten();
        self
    }

    pub fn patterns(&self) -> &[HostPattern] {
        &self.patterns
    }

    /// Whether partitions may be fetched from `url` (scheme and host; the caller has already
    /// refused credentials, queries and fragments).
    pub fn check(&self, url: &Url) -> Result<(), String> {
        let host = url.host_str().ok_or("rootDirectory has no host")?;
        let loopback = crate::auth::is_loopback(url);
        let listed = self.patterns.iter().any(|p| p.matches(host));
        let graph_sibling = loopback
            && self
                .loopback_graph_host
                .as_deref()
                .is_some_and(|g| g.eq_ignore_ascii_case(host));
        if !listed && !graph_sibling {
            let allowed = self
                .patterns
                .iter()
                .map(HostPattern::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(format!(
                "rootDirectory is on {host}, which is not an allowed source storage host \
                 (SOURCE_STORAGE_HOSTS: {allowed}); no request was made to it"
            ));
        }
        match url.scheme() {
            "https" => Ok(()),
            "http" if loopback => Ok(()),
            "http" => Err(format!(
                "rootDirectory on {host} uses plain http; only https is accepted"
            )),
            other => Err(format!(
                "rootDirectory uses scheme {other:?}; only https is accepted"
            )),
        }
    }
}

/// Parses a `microsoft.graph.partners.billing.manifest` object (inline `resourceLocation` or
/// the body of GET `/manifests/{id}`). `hosts` decides where `rootDirectory` may point.
pub fn parse_manifest(json: &Value, hosts: &SourceHosts) -> Result<Manifest, BillingError> {
    let obj = json
        .as_object()
        .ok_or_else(|| invalid("expected a JSON object"))?;
    let id = required_str(obj, "id", MAX_ID_LEN).map_err(invalid)?;
    let etag = required_str(obj, "eTag", MAX_ID_LEN).map_err(invalid)?;
    let root_directory = root_directory(obj, hosts)?;
    let sas_token = sas_token(obj)?;
    let blobs = blobs(obj)?;
    let data_format = optional_str(obj, "dataFormat", MAX_SHORT_LEN).map_err(invalid)?;
    if !KNOWN_DATA_FORMATS
        .iter()
        .any(|k| k.eq_ignore_ascii_case(&data_format))
    {
        tracing::warn!(
            manifest = %id,
            data_format = %data_format,
            "manifest has an unknown dataFormat; treating it as gzip-compressed JSON lines"
        );
    }
    let blob_count = blob_count(obj, &id, blobs.len())?;
    Ok(Manifest {
        schema_version: optional_str(obj, "schemaVersion", MAX_SHORT_LEN).map_err(invalid)?,
        data_format,
        created_date_time: optional_timestamp(obj, "createdDateTime")?,
        partner_tenant_id: optional_str(obj, "partnerTenantId", MAX_SHORT_LEN).map_err(invalid)?,
        partition_type: optional_str(obj, "partitionType", MAX_SHORT_LEN).map_err(invalid)?,
        id,
        etag,
        root_directory,
        sas_token,
        blob_count,
        blobs,
    })
}

/// A required, non-empty string of at most `max` bytes.
pub(crate) fn required_str(
    obj: &Map<String, Value>,
    key: &str,
    max: usize,
) -> Result<String, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(format!("{key} is missing")),
        Some(_) => {
            let s = optional_str(obj, key, max)?;
            if s.is_empty() {
                Err(format!("{key} is empty"))
            } else {
                Ok(s)
            }
        }
    }
}

fn optional_timestamp(
    obj: &Map<String, Value>,
    key: &str,
) -> Result<Option<time::OffsetDateTime>, BillingError> {
    let s = optional_str(obj, key, MAX_SHORT_LEN).map_err(invalid)?;
    Ok(parse_graph_timestamp(&s))
}

/// `rootDirectory`: absolute URL on an allowed source storage host ([`SourceHosts`]), https
/// (http only to loopback), no query or fragment, no credentials, kept byte for byte: it holds
/// `=` in its path segments and is concatenated, not re-encoded, when blob URLs are built.
fn root_directory(obj: &Map<String, Value>, hosts: &SourceHosts) -> Result<String, BillingError> {
    let raw = required_str(obj, "rootDirectory", MAX_URL_LEN).map_err(invalid)?;
    if raw
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(invalid(
            "rootDirectory contains whitespace, control characters or '\\'",
        ));
    }
    if raw.contains('?') || raw.contains('#') {
        return Err(invalid("rootDirectory must not carry a query or fragment"));
    }
    let url = Url::parse(&raw)
        .map_err(|e| invalid(format!("rootDirectory is not an absolute URL ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("rootDirectory must not carry credentials"));
    }
    hosts.check(&url).map_err(invalid)?;
    Ok(raw)
}

/// `sasToken` without a leading `?`, kept as given (already percent-encoded). Missing is
/// allowed (an empty token); a token that could break out of the query string is not.
fn sas_token(obj: &Map<String, Value>) -> Result<Secret, BillingError> {
    let raw = optional_str(obj, "sasToken", MAX_SAS_LEN).map_err(invalid)?;
    let sas = raw.strip_prefix('?').unwrap_or(&raw);
    if sas
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#' || c == '?')
    {
        // The value itself is never echoed.
        return Err(invalid(
            "sasToken contains characters a query string cannot hold",
        ));
    }
    Ok(Secret::new(sas))
}

fn blobs(obj: &Map<String, Value>) -> Result<Vec<ManifestBlob>, BillingError> {
    // An empty list is a legitimate "no data"; a missing one is a broken manifest.
    let list = match obj.get("blobs") {
        None | Some(Value::Null) => return Err(invalid("blobs is missing")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid("blobs is not an array")),
    };
    if list.len() > MAX_BLOBS {
        return Err(invalid(format!(
            "lists {} blobs (at most {MAX_BLOBS} accepted)",
            list.len()
        )));
    }
    let mut seen = HashSet::with_capacity(list.len());
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let blob = parse_blob(v).map_err(|e| invalid(format!("blobs[{i}]: {e}")))?;
        if !seen.insert(blob.name.clone()) {
            return Err(invalid(format!("blobs[{i}]: duplicate name")));
        }
        out.push(blob);
    }
    Ok(out)
}

fn parse_blob(v: &Value) -> Result<ManifestBlob, String> {
    let obj = v.as_object().ok_or("not an object")?;
    let name = required_str(obj, "name", MAX_BLOB_NAME_BYTES)?;
    validate_blob_name(&name)?;
    Ok(ManifestBlob {
        name,
        partition_value: optional_str(obj, "partitionValue", MAX_BLOB_NAME_BYTES)?,
    })
}

/// A blob name is appended to `rootDirectory` and later becomes part of a destination path, so
/// it must stay a plain relative path below the root.
pub fn validate_blob_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_BLOB_NAME_BYTES {
        return Err(format!("name must be 1 to {MAX_BLOB_NAME_BYTES} bytes"));
    }
    if name.starts_with('/') {
        return Err("name must be relative (leading '/')".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '\\' | '?' | '#') || c.is_control())
    {
        let shown = if c.is_control() {
            "a control character".to_string()
        } else {
            format!("{c:?}")
        };
        return Err(format!("name contains {shown}"));
    }
    // URL parsers treat `%2e%2e` as `..` (WHATWG URL), so dot segments are checked decoded too.
    if name.split('/').any(|seg| {
        let decoded = seg.to_ascii_lowercase().replace("%2e", ".");
        decoded == ".." || decoded == "."
    }) {
        return Err("name contains a '.' or '..' segment (possibly percent-encoded)".into());
    }
    if name.split('/').any(str::is_empty) {
        return Err("name contains an empty path segment".into());
    }
    Ok(())
}

/// `blobCount`; when it disagrees with `blobs` the list wins (it is what we copy).
fn blob_count(obj: &Map<String, Value>, id: &str, listed: usize) -> Result<u32, BillingError> {
    let listed_u32 = u32::try_from(listed).expect("bounded by MAX_BLOBS");
    let declared = match obj.get("blobCount") {
        None | Some(Value::Null) => return Ok(listed_u32),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| invalid("blobCount is not a non-negative integer"))?,
    };
    if declared != listed as u64 {
        tracing::warn!(
            manifest = %id,
            blob_count = declared,
            blobs = listed,
            "manifest blobCount disagrees with its blob list; trusting the list"
        );
    }
    Ok(listed_u32)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// The Microsoft Graph v1.0 `billing.manifest` example (one blob, SAS with `%3A` escapes).
    pub(crate) const FULL_EXAMPLE: &str =
        include_str!("../../tests/fixtures/graph/manifest-full.json");

    /// Production: Azure Storage blob endpoints only.
    pub(crate) fn azure() -> SourceHosts {
        SourceHosts::default()
    }

    /// Local mode: Graph (the sandbox) on loopback.
    pub(crate) fn local() -> SourceHosts {
        SourceHosts::default().with_graph_base(&Url::parse("http://127.0.0.1:7080").unwrap())
    }

    fn example() -> Value {
        serde_json::from_str(FULL_EXAMPLE).unwrap()
    }

    fn with(field: &str, v: Value) -> Value {
        let mut j = example();
        j[field] = v;
        j
    }

    fn err_of(j: &Value) -> String {
        parse_manifest(j, &azure()).unwrap_err().to_string()
    }

    #[test]
    fn full_example_parses() {
        let m = parse_manifest(&example(), &azure()).unwrap();
        assert_eq!(m.id, "6fe687d7-1e0f-4bd6-9091-4672691f64bc");
        assert_eq!(m.schema_version, "1");
        assert_eq!(m.data_format, "compressedJSON");
        assert_eq!(m.etag, "WYjLro78HdMg6vUWR");
        assert_eq!(m.partition_type, "Default");
        assert_eq!(m.blob_count, 1);
        assert_eq!(m.blobs.len(), 1);
        assert_eq!(m.blobs[0].partition_value, "default");
        assert_eq!(
            m.created_date_time.unwrap(),
            time::macros::datetime!(2023-03-09 06:34:34.87 UTC)
        );
        assert_eq!(
            m.root_directory,
            example()["rootDirectory"].as_str().unwrap()
        );
        assert!(m.sas_token.expose().starts_with("skoid="));
        assert!(
            !format!("{m:?}").contains("sig="),
            "SAS must not show in Debug"
        );
    }

    #[test]
    fn blob_url_keeps_sas_and_root_encoding() {
        let m = parse_manifest(&example(), &azure()).unwrap();
        let u = m.blob_url(&m.blobs[0]).unwrap();
        let s = u.as_str();
        assert!(s.contains("skt=2023-12-13T00%3A37%3A17Z"), "{s}");
        assert!(!s.contains("%253A"), "{s}");
        assert!(s.contains(
            "/PartnerTenantId=0e195b37-4574-4539-bc42-0e539b9684c0/BillingMonth=202310/"
        ));
        assert!(s.starts_with(&format!("{}/part-00049-", m.root_directory)));
        assert_eq!(u.query().unwrap(), example()["sasToken"].as_str().unwrap());
    }

    #[test]
    fn leading_question_mark_is_stripped_from_sas() {
        let m = parse_manifest(&with("sasToken", json!("?sv=1&sig=abc%3D")), &azure()).unwrap();
        assert_eq!(m.sas_token.expose(), "sv=1&sig=abc%3D");
    }

    #[test]
    fn hostile_blob_names_are_refused() {
        for name in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a?sig=forged",
            "a#frag",
            "a\\b",
            "a\nb",
            "",
            "a//b",
            "./a",
            "%2e%2e/x",
            "a/%2E./x",
            "%2e",
        ] {
            let j = with("blobs", json!([{ "name": name, "partitionValue": "p" }]));
            let e = err_of(&j);
            assert!(e.contains("blobs[0]"), "{name:?}: {e}");
            if name.contains("sig") {
                assert!(!e.contains("forged"), "name echoed: {e}");
            }
        }
        let long = "a".repeat(MAX_BLOB_NAME_BYTES + 1);
        assert!(parse_manifest(&with("blobs", json!([{ "name": long }])), &azure()).is_err());
        let ok = "b".repeat(MAX_BLOB_NAME_BYTES);
        assert!(parse_manifest(&with("blobs", json!([{ "name": ok }])), &azure()).is_ok());
        assert!(parse_manifest(
            &with("blobs", json!([{ "name": "dir/part-1.json.gz" }])),
            &azure()
        )
        .is_ok());
    }

    #[test]
    fn blobs_list_is_required_but_may_be_empty() {
        let mut j = example();
        j.as_object_mut().unwrap().remove("blobs");
        assert!(err_of(&j).contains("blobs is missing"));
        let m = parse_manifest(&with("blobs", json!([])), &azure()).unwrap();
        assert_eq!((m.blobs.len(), m.blob_count), (0, 0));
    }

    #[test]
    fn duplicate_blob_names_are_refused() {
        let j = with(
            "blobs",
            json!([{ "name": "a.gz" }, { "name": "b.gz" }, { "name": "a.gz" }]),
        );
        assert!(err_of(&j).contains("duplicate"));
    }

    #[test]
    fn too_many_blobs_are_refused() {
        let many: Vec<Value> = (0..=MAX_BLOBS)
            .map(|i| json!({ "name": format!("part-{i}.json.gz") }))
            .collect();
        assert_eq!(many.len(), 100_001);
        let e = err_of(&with("blobs", Value::Array(many)));
        assert!(e.contains("100001 blobs"), "{e}");
    }

    #[test]
    fn root_directory_rules() {
        let public_http = "http://adlsrecon.blob.core.windows.net/c/PartnerTenantId=x";
        assert!(err_of(&with("rootDirectory", json!(public_http))).contains("plain http"));
        // Not even in local mode when the host is public.
        assert!(parse_manifest(&with("rootDirectory", json!(public_http)), &local()).is_err());
        let sandbox = "http://127.0.0.1:8080/blob/c/PartnerTenantId=x";
        assert!(parse_manifest(&with("rootDirectory", json!(sandbox)), &azure()).is_err());
        assert!(parse_manifest(&with("rootDirectory", json!(sandbox)), &local()).is_ok());
        let with_query = "https://a.blob.core.windows.net/c/d?sv=1&sig=secretsig";
        let e = err_of(&with("rootDirectory", json!(with_query)));
        assert!(e.contains("query") && !e.contains("secretsig"), "{e}");
        for bad in [
            "https://a.blob.core.windows.net/c#f",
            "/relative/path",
            "ftp://a.blob.core.windows.net/c",
            "https://user:pw@a.blob.core.windows.net/c",
            " https://a.blob.core.windows.net/c",
        ] {
            assert!(
                parse_manifest(&with("rootDirectory", json!(bad)), &local()).is_err(),
                "{bad}"
            );
        }
        assert!(err_of(&with("rootDirectory", json!(null))).contains("rootDirectory is missing"));
    }

    #[test]
    fn root_directory_must_be_on_an_allowed_storage_host() {
        // A foreign https host must not pass: the copy path would fetch from it, or make the
        // partner's storage account fetch from it.
        for foreign in [
            "https://billing.evil.example/c/PartnerTenantId=x",
            "https://a.blob.core.windows.net.evil.example/c",
            "https://blob.core.windows.net/c",
            "https://a.dfs.core.windows.net/c",
            "https://a.blob.core.usgovcloudapi.net/c",
        ] {
            let e = parse_manifest(&with("rootDirectory", json!(foreign)), &azure()).unwrap_err();
            assert!(
                matches!(e, BillingError::InvalidManifest(_)),
                "{foreign}: {e:?}"
            );
            let e = e.to_string();
            assert!(
                e.contains("not an allowed source storage host")
                    && e.contains("SOURCE_STORAGE_HOSTS")
                    && e.contains("*.blob.core.windows.net"),
                "{e}"
            );
            assert!(!e.contains("PartnerTenantId"), "root echoed: {e}");
        }
        // Sovereign clouds are a setting away.
        let gov = SourceHosts::new(vec![
            HostPattern::parse("*.blob.core.usgovcloudapi.net").unwrap(),
            HostPattern::parse("*.blob.core.chinacloudapi.cn").unwrap(),
        ]);
        for ok in [
            "https://a.blob.core.usgovcloudapi.net/c",
            "https://a.blob.core.chinacloudapi.cn/c",
        ] {
            assert!(
                parse_manifest(&with("rootDirectory", json!(ok)), &gov).is_ok(),
                "{ok}"
            );
        }
        assert!(
            parse_manifest(&example(), &gov).is_err(),
            "commercial not listed"
        );
    }

    #[test]
    fn loopback_only_beside_a_loopback_graph_or_when_listed() {
        let sandbox = "http://127.0.0.1:9/blob/c";
        let azurite = "http://127.0.0.1:10000/devstoreaccount1/c";
        // Local mode: Graph on 127.0.0.1, blobs on the same address (sandbox or Azurite).
        for ok in [sandbox, azurite] {
            assert!(parse_manifest(&with("rootDirectory", json!(ok)), &local()).is_ok());
        }
        // Another loopback name is not Graph's host: refused unless listed.
        for other in ["http://localhost:9/blob/c", "http://127.0.0.2:9/blob/c"] {
            let e = err_of_with(other, &local());
            assert!(e.contains("not an allowed source storage host"), "{e}");
        }
        // A public Graph never makes loopback acceptable.
        let public_graph = SourceHosts::default()
            .with_graph_base(&Url::parse("https://graph.microsoft.com").unwrap());
        assert!(err_of_with(sandbox, &public_graph).contains("not an allowed"));
        // Listing it does (e.g. an emulator beside a real Graph endpoint).
        let listed = SourceHosts::new(vec![HostPattern::parse("127.0.0.2").unwrap()]);
        assert!(parse_manifest(
            &with("rootDirectory", json!("http://127.0.0.2:9/c")),
            &listed
        )
        .is_ok());
        // Plain http stays loopback-only even when a public host is listed.
        let e = err_of_with("http://a.blob.core.windows.net/c", &local());
        assert!(e.contains("plain http"), "{e}");
    }

    fn err_of_with(root: &str, hosts: &SourceHosts) -> String {
        parse_manifest(&with("rootDirectory", json!(root)), hosts)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn required_fields() {
        let mut j = example();
        j.as_object_mut().unwrap().remove("eTag");
        assert!(err_of(&j).contains("eTag is missing"));
        let mut j = example();
        j.as_object_mut().unwrap().remove("id");
        assert!(err_of(&j).contains("id is missing"));
        assert!(err_of(&with("eTag", json!(""))).contains("eTag is empty"));
        assert!(err_of(&with("eTag", json!(42))).contains("not a string"));
        assert!(err_of(&json!([1, 2])).contains("object"));
    }

    #[test]
    fn optional_fields_default_and_are_bounded() {
        let mut j = example();
        for k in [
            "schemaVersion",
            "partitionType",
            "partnerTenantId",
            "createdDateTime",
        ] {
            j.as_object_mut().unwrap().remove(k);
        }
        let m = parse_manifest(&j, &azure()).unwrap();
        assert_eq!(m.schema_version, "");
        assert_eq!(m.partition_type, "");
        assert_eq!(m.created_date_time, None);
        assert!(err_of(&with("partitionType", json!("x".repeat(5000)))).contains("partitionType"));
    }

    #[test]
    fn blob_count_disagreement_trusts_the_list() {
        let m = parse_manifest(&with("blobCount", json!(7)), &azure()).unwrap();
        assert_eq!(m.blob_count, 1);
        assert!(parse_manifest(&with("blobCount", json!(-1)), &azure()).is_err());
    }

    #[test]
    fn unknown_data_format_is_accepted() {
        let m = parse_manifest(&with("dataFormat", json!("parquet")), &azure()).unwrap();
        assert_eq!(m.data_format, "parquet");
        let m =
            parse_manifest(&with("dataFormat", json!("compressedJSONLines")), &azure()).unwrap();
        assert_eq!(m.data_format, "compressedJSONLines");
    }

    #[test]
    fn sas_errors_do_not_echo_the_token() {
        let e = err_of(&with("sasToken", json!("sv=1&sig=topsecret#x")));
        assert!(e.contains("sasToken") && !e.contains("topsecret"), "{e}");
    }
}
