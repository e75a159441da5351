//! The partner container as a [`Destination`]: server-side copies (Put Blob From URL, Put Block
//! From URL, async Copy Blob), the streamed relay, skip-by-metadata and verification.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::http::Url;
use azure_storage_blob::models::{
    BlobClientGetPropertiesResultHeaders, BlobClientStartCopyFromUrlOptions,
    BlobClientStartCopyFromUrlResultHeaders, BlobClientUploadOptions,
    BlobContainerClientListBlobsOptions, BlockBlobClientCommitBlockListOptions,
    BlockBlobClientStageBlockFromUrlOptions, BlockBlobClientUploadBlobFromUrlOptions,
    BlockLookupList, CopyStatus, HttpRange,
};
use azure_storage_blob::{BlobClient, BlockBlobClient};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use super::super::relay::{open_source, CopyDigest, STORAGE_API_VERSION};
use super::super::storage::{
    CopyMethod, CopyOutcome, Destination, ObjectPath, SourceIdentity, StorageError,
};
use crate::auth::redact_url;

use super::account::*;
use super::errors::*;
use super::strategy::*;
use super::*;

/// Metadata values are HTTP header values: visible ASCII only. Anything else is
/// percent-encoded, so a blob name with non-ASCII characters still round-trips.
pub(super) fn header_safe(s: &str) -> String {
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

pub(super) fn source_metadata(identity: &SourceIdentity, len: u64) -> HashMap<String, String> {
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
pub(super) struct SourceInfo {
    len: u64,
    content_type: Option<String>,
    md5: Option<String>,
}

/// What is at the destination already.
pub(super) enum Existing {
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

pub(super) fn hex_md5(v: Option<Vec<u8>>) -> Option<String> {
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
pub(super) async fn reserve(
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

pub(super) async fn commit(
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
pub(super) fn block_id(i: usize) -> Vec<u8> {
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

pub(super) fn check_source_url(source: &Url) -> Result<(), StorageError> {
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

    async fn fetch_to_file(
        &self,
        src: &ObjectPath,
        file: &std::path::Path,
    ) -> Result<u64, StorageError> {
        use tokio::io::AsyncWriteExt;
        let blob = self.account.blob_client(&self.container, src)?;
        let got = blob
            .download(None)
            .await
            .map_err(|e| dest_err("reading", src, &e))?;
        let mut out = tokio::io::BufWriter::with_capacity(
            256 * 1024,
            tokio::fs::File::create(file).await.map_err(|e| {
                StorageError::Destination(format!("creating {}: {e}", file.display()))
            })?,
        );
        let mut body = got.body;
        let mut len = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| dest_err("reading", src, &e))?;
            len += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(|e| {
                StorageError::Destination(format!("writing {}: {e}", file.display()))
            })?;
        }
        out.flush()
            .await
            .map_err(|e| StorageError::Destination(format!("writing {}: {e}", file.display())))?;
        Ok(len)
    }

    async fn put_file(
        &self,
        dest: &ObjectPath,
        file: &std::path::Path,
        content_type: &str,
    ) -> Result<u64, StorageError> {
        use tokio::io::AsyncReadExt;
        let io = |e: std::io::Error| {
            StorageError::Destination(format!("reading {}: {e}", file.display()))
        };
        let mut f = tokio::fs::File::open(file).await.map_err(io)?;
        let len = f.metadata().await.map_err(io)?.len();
        let blob = self.account.blob_client(&self.container, dest)?;
        let block_size = self.options.relay_block_size.max(1);
        // Staged block by block and committed at once: memory stays one block, and the blob
        // appears whole (Put Block List) or not at all.
        let bb = blob.block_blob_client();
        let mut ids = Vec::new();
        let mut buf = vec![0u8; block_size];
        loop {
            let mut filled = 0;
            while filled < block_size {
                let n = f.read(&mut buf[filled..]).await.map_err(io)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 && !ids.is_empty() {
                break;
            }
            let id = block_id(ids.len());
            let data = Bytes::copy_from_slice(&buf[..filled]);
            bb.stage_block(&id, filled as u64, data.into(), None)
                .await
                .map_err(|e| dest_err("staging a block of", dest, &e))?;
            ids.push(id);
            if filled < block_size {
                break;
            }
        }
        commit(&bb, ids, HashMap::new(), Some(content_type.to_string()))
            .await
            .map_err(|e| dest_err("committing blocks of", dest, &e))?;
        Ok(len)
    }

    async fn delete_folder(&self, folder: &ObjectPath) -> Result<u64, StorageError> {
        // The trailing slash keeps `v-a` from matching `v-ab/...`.
        let search = format!("{folder}/");
        let container = self.account.container_client(&self.container)?;
        let mut pager = container
            .list_blobs(Some(BlobContainerClientListBlobsOptions {
                prefix: Some(search.clone()),
                ..Default::default()
            }))
            .map_err(|e| dest_err("listing", folder, &e))?;
        let mut names = Vec::new();
        while let Some(item) = pager.next().await {
            let item = item.map_err(|e| dest_err("listing", folder, &e))?;
            names.extend(item.name.and_then(|n| ObjectPath::new(n).ok()));
        }
        let mut deleted = 0;
        for name in names {
            match self
                .account
                .blob_client(&self.container, &name)?
                .delete(None)
                .await
            {
                Ok(_) => deleted += 1,
                // Deleted meanwhile by another finisher: the outcome wanted.
                Err(e) if status_of(&e) == Some(404) => {}
                Err(e) => return Err(dest_err("deleting", &name, &e)),
            }
        }
        Ok(deleted)
    }
}
