//! Ledger documents as JSON blobs with ETags for compare-and-swap.

use async_trait::async_trait;
use azure_core::http::Etag;
use azure_storage_blob::models::{BlobClientUploadOptions, BlobContainerClientListBlobsOptions};
use azure_storage_blob::BlobClient;
use bytes::Bytes;
use futures::StreamExt;

use super::super::storage::{ETag, LedgerStore, ObjectPath, StorageError};

use super::account::*;
use super::errors::*;

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

    /// Ledger keys of the blobs whose full name starts with `search`, sorted.
    async fn list_names(&self, search: &str) -> Result<Vec<ObjectPath>, StorageError> {
        let strip = format!("{}/", self.prefix);
        let container = self.account.container_client(&self.container)?;
        let mut pager = container
            .list_blobs(Some(BlobContainerClientListBlobsOptions {
                prefix: Some(search.to_string()),
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
        // The trailing slash keeps `runs` from matching `runs2/...`.
        self.list_names(&format!("{}/", self.full(prefix)?)).await
    }

    async fn list_starting(
        &self,
        folder: &ObjectPath,
        starts: &str,
    ) -> Result<Vec<ObjectPath>, StorageError> {
        // Blob storage filters by name prefix itself: one month of run records is listed
        // without paging through the years before it.
        self.list_names(&format!("{}/{starts}", self.full(folder)?))
            .await
    }

    async fn delete(&self, key: &ObjectPath) -> Result<bool, StorageError> {
        let (blob, full) = self.client(key)?;
        match blob.delete(None).await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(StorageError::Ledger(format!(
                "deleting {full}: {}",
                describe(&e)
            ))),
        }
    }
}
