//! Azure Blob Storage as the partner's destination and ledger store (azure_storage_blob 1.1).
//!
//! Copies prefer server-side transfers, so partition bytes never pass through the Function:
//! Put Blob From URL (one request, up to 5000 MiB), Put Block From URL in parallel blocks beyond
//! that, and the asynchronous Copy Blob with status polling (the one Azurite implements, and the
//! fallback when the From-URL APIs are refused). The streamed relay is for sinks that cannot pull
//! from a URL; it holds a fixed number of fixed-size blocks, whatever the partition size.
//!
//! Each copy carries its source identity as blob metadata (`pbe_source_*`), so a rerun finds an
//! identical copy and skips it; every copy ends with a HEAD of the destination to verify length.
//!
//! Authorization: our token source (managed identity in Azure) through a pipeline policy of
//! ours, or a SAS in the account URL. The SDK's own bearer policy refuses plain http, which
//! would rule out the loopback stand-ins our tests use; ours allows http only to loopback,
//! the same rule [`crate::auth::AllowList`] applies to every other token.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{
    ClientOptions, Context, Etag, ExponentialRetryOptions, Request, RetryOptions, Url,
};
use azure_storage_blob::models::{
    BlobClientGetPropertiesResultHeaders, BlobClientStartCopyFromUrlOptions,
    BlobClientStartCopyFromUrlResultHeaders, BlobClientUploadOptions,
    BlobContainerClientListBlobsOptions, BlockBlobClientCommitBlockListOptions,
    BlockBlobClientStageBlockFromUrlOptions, BlockBlobClientUploadBlobFromUrlOptions,
    BlockLookupList, CopyStatus, HttpRange,
};
use azure_storage_blob::{
    BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions, BlockBlobClient,
};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use super::relay::{open_source, CopyDigest, STORAGE_API_VERSION};
use super::storage::{
    CopyMethod, CopyOutcome, Destination, ETag, LedgerStore, ObjectPath, SourceIdentity,
    StorageError,
};
use crate::auth::{redact_url, Audience, Secret, TokenSource};

const MIB: u64 = 1024 * 1024;
/// Largest source Put Blob From URL accepts.
pub const PUT_BLOB_FROM_URL_MAX: u64 = 5000 * MIB;
/// Largest block Put Block From URL accepts.
const BLOCK_FROM_URL_MAX: u64 = 4000 * MIB;
/// Most blocks one block blob may have.
const MAX_BLOCKS: u64 = 50_000;

/// Metadata keys recording where a copy came from (C# identifiers, as Azure requires).
pub const META_SOURCE_ETAG: &str = "pbe_source_etag";
pub const META_SOURCE_BLOB: &str = "pbe_source_blob";
pub const META_SOURCE_LENGTH: &str = "pbe_source_length";

/// How `copy_from_url` moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyStrategy {
    /// Put Blob From URL up to [`BlobOptions::put_blob_from_url_limit`], Put Block From URL
    /// beyond; async Copy Blob when the destination does not implement those (Azurite).
    #[default]
    Auto,
    PutBlobFromUrl,
    BlockFromUrl,
    /// Asynchronous Copy Blob with status polling.
    AsyncCopy,
    /// Stream through this process into staged blocks.
    Relay,
}

impl std::str::FromStr for CopyStrategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => CopyStrategy::Auto,
            "put-blob-from-url" => CopyStrategy::PutBlobFromUrl,
            "block-from-url" => CopyStrategy::BlockFromUrl,
            "async-copy" => CopyStrategy::AsyncCopy,
            "relay" => CopyStrategy::Relay,
            other => {
                return Err(format!(
                "{other:?}: expected auto, put-blob-from-url, block-from-url, async-copy or relay"
            ))
            }
        })
    }
}

/// Tuning knobs; the defaults suit Azure.
#[derive(Debug, Clone)]
pub struct BlobOptions {
    pub strategy: CopyStrategy,
    /// Sources up to this size use Put Blob From URL under `Auto`.
    pub put_blob_from_url_limit: u64,
    /// Block size for Put Block From URL (raised if the source would need over 50,000 blocks).
    pub block_size: u64,
    /// Put Block From URL requests in flight.
    pub block_concurrency: usize,
    /// Block size of the streamed relay; its buffers hold at most
    /// `relay_block_size * (relay_in_flight + 2)` bytes (one filling, one queued, the rest
    /// uploading), whatever the partition size.
    pub relay_block_size: usize,
    /// Relay blocks being uploaded at once.
    pub relay_in_flight: usize,
    /// First wait between async copy status checks (doubles up to 5 s).
    pub copy_poll_interval: Duration,
    /// How long one invocation waits for an async copy; a later invocation resumes it (the
    /// copy keeps running in storage meanwhile). Default 4 min: inside the 5 min default
    /// function timeout of the Consumption plan, with room for the rest of the invocation.
    pub copy_deadline: Duration,
}

impl Default for BlobOptions {
    fn default() -> Self {
        Self {
            strategy: CopyStrategy::Auto,
            put_blob_from_url_limit: PUT_BLOB_FROM_URL_MAX,
            block_size: 100 * MIB,
            block_concurrency: 8,
            relay_block_size: 8 * MIB as usize,
            relay_in_flight: 2,
            copy_poll_interval: Duration::from_millis(250),
            copy_deadline: Duration::from_secs(4 * 60),
        }
    }
}

/// How requests to the account are authorized.
#[derive(Clone)]
pub enum BlobAuth {
    /// A bearer token for Azure Storage from our token source (managed identity in Azure).
    Token(Arc<dyn TokenSource>),
    /// A SAS query string (account or container SAS), appended to every request.
    Sas(Secret),
}

impl std::fmt::Debug for BlobAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobAuth::Token(t) => f.debug_tuple("Token").field(t).finish(),
            BlobAuth::Sas(_) => f.write_str("Sas(<redacted>)"),
        }
    }
}

/// A storage account's blob endpoint plus its authorization; hands out SDK clients.
#[derive(Debug, Clone)]
pub struct BlobAccount {
    /// Without query, without trailing slash.
    account_url: Url,
    auth: BlobAuth,
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn config_err(msg: impl Into<String>) -> StorageError {
    StorageError::Destination(msg.into())
}

impl BlobAccount {
    /// `account_url` like `https://contoso.blob.core.windows.net` (Azurite:
    /// `http://127.0.0.1:10000/devstoreaccount1`), authorized by `tokens` (audience Storage).
    pub fn with_token(
        account_url: &Url,
        tokens: Arc<dyn TokenSource>,
    ) -> Result<Self, StorageError> {
        let url = Self::base(account_url)?;
        if url.scheme() != "https" && !is_loopback(&url) {
            return Err(config_err(format!(
                "{}: a token is only sent over https (plain http only to loopback)",
                redact_url(&url)
            )));
        }
        Ok(Self {
            account_url: url,
            auth: BlobAuth::Token(tokens),
        })
    }

    /// `account_url` authorized by a SAS query string (`sv=...&sig=...`, no leading `?`).
    pub fn with_sas(account_url: &Url, sas: Secret) -> Result<Self, StorageError> {
        let url = Self::base(account_url)?;
        let q = sas.expose().trim_start_matches('?');
        if !q.contains("sig=") {
            return Err(config_err("the SAS has no signature (sig=)"));
        }
        Ok(Self {
            account_url: url,
            auth: BlobAuth::Sas(Secret::new(q)),
        })
    }

    /// An account SAS URL (`https://acct.blob.core.windows.net?sv=...&sig=...`).
    pub fn from_sas_url(url: &Url) -> Result<Self, StorageError> {
        let sas = url
            .query()
            .ok_or_else(|| config_err(format!("{}: no SAS query", redact_url(url))))?
            .to_string();
        Self::with_sas(url, Secret::new(sas))
    }

    fn base(url: &Url) -> Result<Url, StorageError> {
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err(config_err(format!(
                "{}: not an http(s) storage endpoint",
                redact_url(url)
            )));
        }
        let mut u = url.clone();
        u.set_query(None);
        u.set_fragment(None);
        // A trailing slash would make the SDK produce `//container` paths.
        let path = u.path().trim_end_matches('/').to_string();
        u.set_path(&path);
        Ok(u)
    }

    /// The URL of `container` / `path` without any SAS, percent-encoded per segment.
    pub fn blob_url(&self, container: &str, path: Option<&ObjectPath>) -> Url {
        let mut u = self.account_url.clone();
        {
            let mut segs = u.path_segments_mut().expect("http(s) URLs have a path");
            segs.pop_if_empty().push(container);
            if let Some(p) = path {
                segs.extend(p.as_str().split('/'));
            }
        }
        u
    }

    fn with_auth(&self, mut url: Url) -> (Url, ClientOptions) {
        let mut options = ClientOptions {
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: azure_core::time::Duration::milliseconds(200),
                max_retries: 3,
                max_total_elapsed: azure_core::time::Duration::seconds(30),
                max_delay: azure_core::time::Duration::seconds(5),
            }),
            ..Default::default()
        };
        match &self.auth {
            BlobAuth::Sas(sas) => url.set_query(Some(sas.expose())),
            BlobAuth::Token(tokens) => options.per_try_policies.push(Arc::new(BearerPolicy {
                tokens: tokens.clone(),
            })),
        }
        (url, options)
    }

    pub fn blob_client(
        &self,
        container: &str,
        path: &ObjectPath,
    ) -> Result<BlobClient, StorageError> {
        let (url, client_options) = self.with_auth(self.blob_url(container, Some(path)));
        BlobClient::new(
            url,
            None,
            Some(BlobClientOptions {
                client_options,
                version: STORAGE_API_VERSION.into(),
            }),
        )
        .map_err(|e| config_err(format!("blob client: {}", describe(&e))))
    }

    pub fn container_client(&self, container: &str) -> Result<BlobContainerClient, StorageError> {
        let (url, client_options) = self.with_auth(self.blob_url(container, None));
        BlobContainerClient::new(
            url,
            None,
            Some(BlobContainerClientOptions {
                client_options,
                version: STORAGE_API_VERSION.into(),
            }),
        )
        .map_err(|e| config_err(format!("container client: {}", describe(&e))))
    }

    /// Creates `container` unless it exists (infra normally does; tests and local runs need it).
    pub async fn ensure_container(&self, container: &str) -> Result<(), StorageError> {
        match self.container_client(container)?.create(None).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(config_err(format!(
                "creating container {container}: {}",
                describe(&e)
            ))),
        }
    }
}

/// Attaches `Authorization: Bearer` from our (cached) token source on every try.
#[derive(Debug)]
struct BearerPolicy {
    tokens: Arc<dyn TokenSource>,
}

#[async_trait]
impl Policy for BearerPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        // Checked per request too: a client is only built from a checked account URL, but
        // a token must never leave in clear text whatever URL a request ends up with.
        if request.url().scheme() != "https" && !is_loopback(request.url()) {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "refusing to send a storage token over plain http to a non-loopback host",
            ));
        }
        let token = self
            .tokens
            .token(Audience::Storage)
            .await
            .map_err(|e| azure_core::Error::new(azure_core::error::ErrorKind::Credential, e))?;
        request.insert_header("authorization", format!("Bearer {}", token.secret.expose()));
        next[0].send(ctx, request, &next[1..]).await
    }
}

fn status_of(e: &azure_core::Error) -> Option<u16> {
    e.http_status().map(u16::from)
}

fn code_of(e: &azure_core::Error) -> Option<&str> {
    match e.kind() {
        azure_core::error::ErrorKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

/// An SDK error for messages: status and service error code, or the error kind and a message
/// with any URL query (SAS) removed. Transport errors can quote the request URL.
fn describe(e: &azure_core::Error) -> String {
    match (status_of(e), code_of(e)) {
        (Some(s), c) => format!("HTTP {s} {}", c.unwrap_or(""))
            .trim_end()
            .to_string(),
        (None, _) => scrub(&format!("{:?}: {e}", e.kind())),
    }
}

/// Removes query strings from anything that looks like a URL (SAS tokens live there).
pub(crate) fn scrub(s: &str) -> String {
    s.split(' ')
        .map(|w| match w.find('?') {
            Some(i) if w.contains("://") || w.contains("sig=") || w.contains("sv=") => {
                format!("{}?<redacted>", &w[..i])
            }
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn dest_err(what: &str, dest: &ObjectPath, e: &azure_core::Error) -> StorageError {
    StorageError::Destination(format!("{what} {dest}: {}", describe(e)))
}

/// Errors of requests that make storage read the source: a source that refuses our SAS comes
/// back from the *destination* as `CannotVerifyCopySource` with the source's status, 403 for an
/// expired or revoked SAS and 404 when the signature does not match (Azure and Azurite both
/// report it that way), so both mean "refresh the manifest".
fn copy_err(what: &str, dest: &ObjectPath, e: &azure_core::Error) -> StorageError {
    match (status_of(e), code_of(e)) {
        (Some(s @ (401 | 403 | 404)), Some("CannotVerifyCopySource")) => {
            StorageError::SourceForbidden {
                status: s,
                code: "CannotVerifyCopySource".into(),
            }
        }
        _ => dest_err(what, dest, e),
    }
}

/// The From-URL APIs are not implemented by the destination: Azurite answers 501, or 500 when
/// the request is SAS-authorized (its SAS authenticator has no entry for these operations).
fn not_implemented(e: &azure_core::Error) -> bool {
    matches!(status_of(e), Some(501 | 500))
}

/// Metadata values are HTTP header values: visible ASCII only. Anything else is
/// percent-encoded, so a blob name with non-ASCII characters still round-trips.
fn header_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x21..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn source_metadata(identity: &SourceIdentity, len: u64) -> HashMap<String, String> {
    HashMap::from([
        (
            META_SOURCE_ETAG.to_string(),
            header_safe(&identity.manifest_etag),
        ),
        (
            META_SOURCE_BLOB.to_string(),
            header_safe(&identity.blob_name),
        ),
        (META_SOURCE_LENGTH.to_string(), len.to_string()),
    ])
}

/// What a HEAD of the source said.
#[derive(Debug, Clone)]
struct SourceInfo {
    len: u64,
    content_type: Option<String>,
    md5: Option<String>,
}

/// What is at the destination already.
enum Existing {
    Absent,
    /// Same source, complete: nothing to do.
    Same {
        md5: Option<String>,
    },
    /// Same source, an async copy still running (an earlier invocation started it).
    PendingCopy,
    /// Something else (another source, a failed copy): overwrite.
    Other,
}

fn hex_md5(v: Option<Vec<u8>>) -> Option<String> {
    v.filter(|b| b.len() == 16).map(hex::encode)
}

/// The partner's container as a [`Destination`].
#[derive(Debug)]
pub struct BlobDestination {
    account: BlobAccount,
    container: String,
    options: BlobOptions,
    /// For the source (a SAS URL on Microsoft's storage): HEAD and the relay's GET.
    http: reqwest::Client,
    /// Set once the destination refused a From-URL API, so `Auto` goes straight to async copy.
    from_url_unsupported: AtomicBool,
}

impl BlobDestination {
    pub fn new(
        account: BlobAccount,
        container: impl Into<String>,
        options: BlobOptions,
        http: reqwest::Client,
    ) -> Result<Self, StorageError> {
        let container = container.into();
        validate_container(&container)?;
        if options.block_size == 0
            || options.block_size > BLOCK_FROM_URL_MAX
            || options.relay_block_size == 0
            || options.block_concurrency == 0
            || options.relay_in_flight == 0
        {
            return Err(config_err(
                "block sizes and concurrency must be positive (Put Block From URL blocks at most 4000 MiB)",
            ));
        }
        Ok(Self {
            account,
            container,
            options,
            http,
            from_url_unsupported: AtomicBool::new(false),
        })
    }

    pub fn account(&self) -> &BlobAccount {
        &self.account
    }

    pub fn container(&self) -> &str {
        &self.container
    }

    async fn head_source(&self, source: &Url) -> Result<SourceInfo, StorageError> {
        let res = self
            .http
            .head(source.clone())
            .header("x-ms-version", STORAGE_API_VERSION)
            .send()
            .await
            .map_err(|e| StorageError::Source(scrub(&e.without_url().to_string())))?;
        let status = res.status().as_u16();
        let header = |n: &str| {
            res.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let code = header("x-ms-error-code").unwrap_or_default();
        match status {
            200 => {}
            401 | 403 => return Err(StorageError::SourceForbidden { status, code }),
            404 => {
                return Err(StorageError::SourceNotFound(
                    format!("404 {code}").trim().into(),
                ))
            }
            s => return Err(StorageError::Source(format!("HEAD: HTTP {s} {code}"))),
        }
        // Read the header itself: for HEAD the body length is 0 whatever the blob's size.
        let len = header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| StorageError::Source("HEAD: no Content-Length".into()))?;
        let md5 = header("content-md5").and_then(|s| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .ok()
                .and_then(|b| hex_md5(Some(b)))
        });
        Ok(SourceInfo {
            len,
            content_type: header("content-type"),
            md5,
        })
    }

    async fn existing(
        &self,
        blob: &BlobClient,
        dest: &ObjectPath,
        meta: &HashMap<String, String>,
        len: u64,
    ) -> Result<Existing, StorageError> {
        let props = match blob.get_properties(None).await {
            Ok(p) => p,
            Err(e) if status_of(&e) == Some(404) => return Ok(Existing::Absent),
            Err(e) => return Err(dest_err("reading properties of", dest, &e)),
        };
        let have = props.metadata().unwrap_or_default();
        let same = meta.iter().all(|(k, v)| have.get(k) == Some(v));
        if !same {
            return Ok(Existing::Other);
        }
        match props.copy_status().ok().flatten() {
            Some(CopyStatus::Pending) => return Ok(Existing::PendingCopy),
            Some(CopyStatus::Failed) | Some(CopyStatus::Aborted) => return Ok(Existing::Other),
            _ => {}
        }
        if props.content_length().ok().flatten() == Some(len) {
            Ok(Existing::Same {
                md5: hex_md5(props.content_md5().ok().flatten()),
            })
        } else {
            Ok(Existing::Other)
        }
    }

    /// HEADs the destination: the length must equal the source's; returns its Content-MD5.
    async fn verify(
        &self,
        blob: &BlobClient,
        dest: &ObjectPath,
        len: u64,
    ) -> Result<Option<String>, StorageError> {
        let props = blob
            .get_properties(None)
            .await
            .map_err(|e| dest_err("verifying", dest, &e))?;
        let got = props.content_length().ok().flatten();
        if got != Some(len) {
            return Err(StorageError::Verification(format!(
                "{dest}: source has {len} bytes, destination {}",
                got.map_or("unknown".into(), |g| g.to_string())
            )));
        }
        Ok(hex_md5(props.content_md5().ok().flatten()))
    }

    fn choose(&self, len: u64) -> CopyStrategy {
        match self.options.strategy {
            CopyStrategy::Auto if self.from_url_unsupported.load(Ordering::Relaxed) => {
                CopyStrategy::AsyncCopy
            }
            CopyStrategy::Auto if len <= self.options.put_blob_from_url_limit => {
                CopyStrategy::PutBlobFromUrl
            }
            CopyStrategy::Auto => CopyStrategy::BlockFromUrl,
            s => s,
        }
    }

    async fn put_blob_from_url(
        &self,
        blob: &BlobClient,
        source: &Url,
        dest: &ObjectPath,
        meta: HashMap<String, String>,
    ) -> Result<(), azure_core::Error> {
        let _ = dest;
        blob.block_blob_client()
            .upload_blob_from_url(
                source.to_string(),
                Some(BlockBlobClientUploadBlobFromUrlOptions {
                    metadata: Some(meta),
                    ..Default::default()
                }),
            )
            .await
            .map(|_| ())
    }

    /// Parallel Put Block From URL over the whole source, then Put Block List in order.
    async fn block_from_url(
        &self,
        blob: &BlobClient,
        source: &Url,
        src: &SourceInfo,
        meta: HashMap<String, String>,
    ) -> Result<(), azure_core::Error> {
        let ranges = block_ranges(src.len, self.options.block_size);
        let ids: Vec<Vec<u8>> = (0..ranges.len()).map(block_id).collect();
        let bb = blob.block_blob_client();
        let source = source.to_string();
        let (bb_ref, ids_ref) = (&bb, &ids);
        futures::stream::iter(ranges.iter().copied().enumerate())
            .map(|(i, (offset, len))| {
                let (bb, id) = (bb_ref, &ids_ref[i]);
                let source = source.clone();
                async move {
                    bb.stage_block_from_url(
                        id,
                        0,
                        source,
                        Some(BlockBlobClientStageBlockFromUrlOptions {
                            source_range: Some(HttpRange::new(offset, len)),
                            ..Default::default()
                        }),
                    )
                    .await
                    .map(|_| ())
                }
            })
            .buffer_unordered(self.options.block_concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        commit(&bb, ids, meta, src.content_type.clone()).await
    }

    /// Asynchronous Copy Blob, then polls the destination's copy status until done or the
    /// deadline (a later invocation resumes a copy still pending then).
    async fn async_copy(
        &self,
        blob: &BlobClient,
        source: Option<&Url>,
        dest: &ObjectPath,
        meta: HashMap<String, String>,
    ) -> Result<(), StorageError> {
        let mut status = match source {
            Some(source) => blob
                .start_copy_from_url(
                    source.to_string(),
                    Some(BlobClientStartCopyFromUrlOptions {
                        metadata: Some(meta),
                        ..Default::default()
                    }),
                )
                .await
                .map_err(|e| copy_err("starting copy to", dest, &e))?
                .copy_status()
                .ok()
                .flatten(),
            None => Some(CopyStatus::Pending),
        };
        let deadline = tokio::time::Instant::now() + self.options.copy_deadline;
        let mut wait = self.options.copy_poll_interval;
        let mut description = None;
        loop {
            match status {
                Some(CopyStatus::Success) => return Ok(()),
                Some(CopyStatus::Failed) | Some(CopyStatus::Aborted) => {
                    let d: String = description.clone().unwrap_or_default();
                    // The description starts with the source's status, e.g. "403 AuthenticationFailed ...".
                    return Err(if d.starts_with("403") || d.starts_with("401") {
                        StorageError::SourceForbidden {
                            status: 403,
                            code: "CopyFailed".into(),
                        }
                    } else {
                        StorageError::Destination(format!("copy to {dest} failed: {}", scrub(&d)))
                    });
                }
                _ => {}
            }
            if tokio::time::Instant::now() + wait > deadline {
                return Err(StorageError::Destination(format!(
                    "copy to {dest} still pending after {:?}; a retry resumes it",
                    self.options.copy_deadline
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
            let props = blob
                .get_properties(None)
                .await
                .map_err(|e| dest_err("polling copy to", dest, &e))?;
            status = props.copy_status().ok().flatten();
            description = props.copy_status_description().ok().flatten();
            if status.is_none() {
                // No copy properties: the blob was overwritten by someone else meanwhile.
                return Err(StorageError::Destination(format!(
                    "copy to {dest} lost its copy status"
                )));
            }
        }
    }

    /// Streams the source into staged blocks of `relay_block_size` and commits them. Memory
    /// is bounded by construction: one block filling, one queued, `relay_in_flight` uploading
    /// (the queue is a channel of capacity 1; `buffer_unordered` caps the uploads).
    async fn relay(
        &self,
        blob: &BlobClient,
        source: &Url,
        dest: &ObjectPath,
        content_type: Option<String>,
        meta: HashMap<String, String>,
    ) -> Result<CopyOutcome, StorageError> {
        let src = open_source(&self.http, source).await?;
        let block_size = self.options.relay_block_size;
        let bb = blob.block_blob_client();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, Bytes)>(1);
        let expected = (src.expected_len, src.expected_md5);

        let read = async move {
            let mut digest = CopyDigest::new();
            let mut body = src.response.bytes_stream();
            let mut buf = BytesMut::new();
            let mut n = 0usize;
            // A slot in the queue is reserved *before* a block is filled, so a full block never
            // waits in our hands: at most one block filling, one queued, `in_flight` uploading.
            let mut slot = reserve(&tx, n).await?;
            while let Some(chunk) = body.next().await {
                let mut chunk =
                    chunk.map_err(|e| StorageError::Source(scrub(&e.without_url().to_string())))?;
                digest.update(&chunk);
                while !chunk.is_empty() {
                    if buf.capacity() == 0 {
                        buf.reserve(block_size);
                    }
                    let take = (block_size - buf.len()).min(chunk.len());
                    buf.extend_from_slice(&chunk.split_to(take));
                    if buf.len() == block_size {
                        slot.send((n, std::mem::take(&mut buf).freeze()));
                        n += 1;
                        slot = reserve(&tx, n).await?;
                    }
                }
            }
            if !buf.is_empty() {
                slot.send((n, buf.freeze()));
            } else {
                drop(slot);
            }
            drop(tx);
            digest.finish(expected.0, expected.1)
        };
        let upload = async {
            let blocks = futures::stream::poll_fn(|cx| rx.poll_recv(cx));
            let mut ids: Vec<(usize, Vec<u8>)> = blocks
                .map(|(i, data)| {
                    let bb = &bb;
                    async move {
                        let id = block_id(i);
                        bb.stage_block(&id, data.len() as u64, data.into(), None)
                            .await
                            .map_err(|e| dest_err("staging a block of", dest, &e))?;
                        Ok::<_, StorageError>((i, id))
                    }
                })
                .buffer_unordered(self.options.relay_in_flight)
                .try_collect()
                .await?;
            ids.sort_by_key(|(i, _)| *i);
            Ok::<_, StorageError>(ids.into_iter().map(|(_, id)| id).collect::<Vec<_>>())
        };
        let (outcome, ids) = futures::try_join!(read, upload)?;
        commit(&bb, ids, meta, content_type)
            .await
            .map_err(|e| dest_err("committing blocks of", dest, &e))?;
        Ok(outcome)
    }
}

/// Waits for room in the block queue for block number `n`.
async fn reserve(
    tx: &tokio::sync::mpsc::Sender<(usize, Bytes)>,
    n: usize,
) -> Result<tokio::sync::mpsc::Permit<'_, (usize, Bytes)>, StorageError> {
    if n as u64 >= MAX_BLOCKS {
        return Err(StorageError::Destination(
            "relay needs more than 50,000 blocks: raise the relay block size".into(),
        ));
    }
    tx.reserve()
        .await
        .map_err(|_| StorageError::Destination("block upload stopped".into()))
}

async fn commit(
    bb: &BlockBlobClient,
    ids: Vec<Vec<u8>>,
    meta: HashMap<String, String>,
    content_type: Option<String>,
) -> Result<(), azure_core::Error> {
    let list = BlockLookupList {
        latest: Some(ids),
        ..Default::default()
    };
    bb.commit_block_list(
        list.try_into()?,
        Some(BlockBlobClientCommitBlockListOptions {
            metadata: Some(meta),
            blob_content_type: content_type,
            ..Default::default()
        }),
    )
    .await
    .map(|_| ())
}

/// Block ids must have equal length within a blob; a fixed-width counter guarantees it
/// (the SDK base64-encodes them).
fn block_id(i: usize) -> Vec<u8> {
    format!("pbe-block-{i:06}").into_bytes()
}

/// `(offset, length)` pairs covering `len` bytes without gaps or overlaps; the block size grows
/// if `len` would need more than 50,000 blocks.
pub(crate) fn block_ranges(len: u64, block_size: u64) -> Vec<(u64, u64)> {
    let size = block_size.max(len.div_ceil(MAX_BLOCKS)).max(1);
    (0..len.div_ceil(size))
        .map(|i| {
            let off = i * size;
            (off, size.min(len - off))
        })
        .collect()
}

/// Container names: 3-63 characters, lowercase letters, digits and single hyphens.
fn validate_container(c: &str) -> Result<(), StorageError> {
    let ok = (3..=63).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !c.starts_with('-')
        && !c.ends_with('-')
        && !c.contains("--");
    if ok {
        Ok(())
    } else {
        Err(config_err(format!("{c:?} is not a valid container name")))
    }
}

fn check_source_url(source: &Url) -> Result<(), StorageError> {
    match source.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(source) => Ok(()),
        _ => Err(StorageError::Source(format!(
            "{}: the source must be an https URL",
            redact_url(source)
        ))),
    }
}

#[async_trait]
impl Destination for BlobDestination {
    async fn copy_from_url(
        &self,
        source: &Url,
        dest: &ObjectPath,
        identity: &SourceIdentity,
    ) -> Result<CopyOutcome, StorageError> {
        check_source_url(source)?;
        let src = self.head_source(source).await?;
        let blob = self.account.blob_client(&self.container, dest)?;
        let meta = source_metadata(identity, src.len);
        let server_side = |md5: Option<String>, method| CopyOutcome {
            bytes: src.len,
            md5: md5.or_else(|| src.md5.clone()),
            rows: None,
            method,
        };
        match self.existing(&blob, dest, &meta, src.len).await? {
            Existing::Same { md5 } => return Ok(server_side(md5, CopyMethod::Skipped)),
            Existing::PendingCopy => {
                self.async_copy(&blob, None, dest, meta).await?;
                let md5 = self.verify(&blob, dest, src.len).await?;
                return Ok(server_side(md5, CopyMethod::ServerSide));
            }
            Existing::Absent | Existing::Other => {}
        }
        let strategy = self.choose(src.len);
        let attempt = match strategy {
            CopyStrategy::PutBlobFromUrl => {
                self.put_blob_from_url(&blob, source, dest, meta.clone())
                    .await
            }
            CopyStrategy::BlockFromUrl => {
                self.block_from_url(&blob, source, &src, meta.clone()).await
            }
            CopyStrategy::AsyncCopy => {
                self.async_copy(&blob, Some(source), dest, meta.clone())
                    .await?;
                Ok(())
            }
            CopyStrategy::Relay => {
                let mut out = self
                    .relay(&blob, source, dest, src.content_type.clone(), meta)
                    .await?;
                self.verify(&blob, dest, src.len).await?;
                out.method = CopyMethod::Relay;
                return Ok(out);
            }
            CopyStrategy::Auto => unreachable!("choose() resolves Auto"),
        };
        if let Err(e) = attempt {
            if self.options.strategy == CopyStrategy::Auto && not_implemented(&e) {
                tracing::info!(
                    dest = %dest,
                    status = ?status_of(&e),
                    "destination does not implement the From-URL copy APIs; using async Copy Blob"
                );
                self.from_url_unsupported.store(true, Ordering::Relaxed);
                self.async_copy(&blob, Some(source), dest, meta).await?;
            } else {
                return Err(copy_err("copying to", dest, &e));
            }
        }
        let md5 = self.verify(&blob, dest, src.len).await?;
        Ok(server_side(md5, CopyMethod::ServerSide))
    }

    async fn put_bytes(
        &self,
        dest: &ObjectPath,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        // One Put Blob: the document appears whole or not at all.
        self.account
            .blob_client(&self.container, dest)?
            .upload(
                bytes.into(),
                Some(BlobClientUploadOptions {
                    blob_content_type: Some(content_type.to_string()),
                    ..Default::default()
                }),
            )
            .await
            .map(|_| ())
            .map_err(|e| dest_err("writing", dest, &e))
    }

    fn locate(&self, dest: &ObjectPath) -> String {
        self.account
            .blob_url(&self.container, Some(dest))
            .to_string()
    }
}

/// Ledger documents as JSON blobs under `prefix` in the partner's container, with ETags for
/// compare-and-swap.
#[derive(Debug)]
pub struct BlobLedger {
    account: BlobAccount,
    container: String,
    prefix: ObjectPath,
}

impl BlobLedger {
    pub fn new(
        account: BlobAccount,
        container: impl Into<String>,
        prefix: ObjectPath,
    ) -> Result<Self, StorageError> {
        let container = container.into();
        validate_container(&container)?;
        Ok(Self {
            account,
            container,
            prefix,
        })
    }

    fn full(&self, key: &ObjectPath) -> Result<ObjectPath, StorageError> {
        self.prefix.join(key.as_str())
    }

    fn client(&self, key: &ObjectPath) -> Result<(BlobClient, ObjectPath), StorageError> {
        let full = self.full(key)?;
        Ok((self.account.blob_client(&self.container, &full)?, full))
    }

    async fn put(
        &self,
        key: &ObjectPath,
        body: Vec<u8>,
        condition: BlobClientUploadOptions<'_>,
    ) -> Result<Option<ETag>, StorageError> {
        let (blob, full) = self.client(key)?;
        let options = BlobClientUploadOptions {
            blob_content_type: Some("application/json".into()),
            ..condition
        };
        match blob.upload(Bytes::from(body).into(), Some(options)).await {
            Ok(r) => {
                let tag = r.etag.ok_or_else(|| {
                    StorageError::Ledger(format!("writing {full}: no ETag in the answer"))
                })?;
                Ok(Some(ETag(tag.to_string())))
            }
            // 409 BlobAlreadyExists (If-None-Match: *), 412 ConditionNotMet (If-Match), 404
            // (replaced document deleted): the caller lost the race.
            Err(e) if matches!(status_of(&e), Some(409 | 412 | 404)) => Ok(None),
            Err(e) => Err(StorageError::Ledger(format!(
                "writing {full}: {}",
                describe(&e)
            ))),
        }
    }
}

#[async_trait]
impl LedgerStore for BlobLedger {
    async fn read(&self, key: &ObjectPath) -> Result<Option<(Vec<u8>, ETag)>, StorageError> {
        let (blob, full) = self.client(key)?;
        let err = |e: &azure_core::Error| {
            StorageError::Ledger(format!("reading {full}: {}", describe(e)))
        };
        let res = match blob.download(None).await {
            Ok(r) => r,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(err(&e)),
        };
        let tag = res
            .properties
            .etag
            .clone()
            .ok_or_else(|| StorageError::Ledger(format!("reading {full}: no ETag")))?;
        let body = res.body.collect().await.map_err(|e| err(&e))?;
        Ok(Some((body.to_vec(), ETag(tag.to_string()))))
    }

    async fn create(&self, key: &ObjectPath, body: Vec<u8>) -> Result<Option<ETag>, StorageError> {
        self.put(
            key,
            body,
            BlobClientUploadOptions {
                if_none_match: Some(Etag::from("*")),
                ..Default::default()
            },
        )
        .await
    }

    async fn replace(
        &self,
        key: &ObjectPath,
        body: Vec<u8>,
        if_match: &ETag,
    ) -> Result<Option<ETag>, StorageError> {
        self.put(
            key,
            body,
            BlobClientUploadOptions {
                if_match: Some(Etag::from(if_match.0.clone())),
                ..Default::default()
            },
        )
        .await
    }

    async fn list(&self, prefix: &ObjectPath) -> Result<Vec<ObjectPath>, StorageError> {
        let full = self.full(prefix)?;
        // The trailing slash keeps `runs` from matching `runs2/...`.
        let search = format!("{full}/");
        let strip = format!("{}/", self.prefix);
        let container = self.account.container_client(&self.container)?;
        let mut pager = container
            .list_blobs(Some(BlobContainerClientListBlobsOptions {
                prefix: Some(search.clone()),
                ..Default::default()
            }))
            .map_err(|e| StorageError::Ledger(format!("listing {search}: {}", describe(&e))))?;
        let mut out = Vec::new();
        while let Some(item) = pager.next().await {
            let item = item
                .map_err(|e| StorageError::Ledger(format!("listing {search}: {}", describe(&e))))?;
            let Some(name) = item.name else {
                continue;
            };
            if let Some(rel) = name.strip_prefix(&strip) {
                if let Ok(k) = ObjectPath::new(rel) {
                    out.push(k);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_without_gaps() {
        assert_eq!(block_ranges(0, 10), vec![]);
        assert_eq!(block_ranges(25, 10), vec![(0, 10), (10, 10), (20, 5)]);
        assert_eq!(block_ranges(20, 10), vec![(0, 10), (10, 10)]);
        // 50,000-block cap raises the block size.
        let r = block_ranges(100_000, 1);
        assert_eq!(r.len(), 50_000);
        assert_eq!(r.iter().map(|x| x.1).sum::<u64>(), 100_000);
        assert_eq!(block_id(1).len(), block_id(49_999).len());
    }

    #[test]
    fn urls_and_names() {
        let a = BlobAccount::with_sas(
            &Url::parse("http://127.0.0.1:10000/devstoreaccount1/").unwrap(),
            Secret::new("sv=2020-12-06&sig=abc"),
        )
        .unwrap();
        let p = ObjectPath::new("x/part 1ü.json.gz").unwrap();
        assert_eq!(
            a.blob_url("c1c", Some(&p)).as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/c1c/x/part%201%C3%BC.json.gz"
        );
        let az = BlobAccount::with_sas(
            &Url::parse("https://acct.blob.core.windows.net").unwrap(),
            Secret::new("sig=x"),
        )
        .unwrap();
        assert_eq!(
            az.blob_url("c1c", Some(&p)).path(),
            "/c1c/x/part%201%C3%BC.json.gz"
        );
        assert!(validate_container("billing-exports").is_ok());
        for bad in ["ab", "Bad", "a--b", "-ab", "a_b"] {
            assert!(validate_container(bad).is_err(), "{bad}");
        }
        let tokens: Arc<dyn TokenSource> =
            Arc::new(crate::auth::StaticTokenSource::local_sandbox());
        assert!(BlobAccount::with_token(
            &Url::parse("http://acct.blob.core.windows.net").unwrap(),
            tokens.clone()
        )
        .is_err());
        assert!(format!("{a:?}").contains("<redacted>") && !format!("{a:?}").contains("abc"));
    }

    #[test]
    fn metadata_is_header_safe_and_errors_hide_sas() {
        assert_eq!(header_safe("\"0x8D\""), "\"0x8D\"");
        assert_eq!(header_safe("a b%ü"), "a%20b%25%C3%BC");
        assert_eq!(
            scrub("error sending request for url (https://a.blob.core.windows.net/c/b?sv=1&sig=x)"),
            "error sending request for url (https://a.blob.core.windows.net/c/b?<redacted>"
        );
        assert_eq!("auto".parse::<CopyStrategy>().unwrap(), CopyStrategy::Auto);
        assert!("fast".parse::<CopyStrategy>().is_err());
    }
}
