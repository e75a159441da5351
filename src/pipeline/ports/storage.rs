//! The partner's storage, as the pipeline sees it: a place to copy partitions into and to write
//! small JSON documents, plus a ledger store with optimistic concurrency (ETags). The adapters
//! (`adapters::filesystem`, `adapters::blob`) implement these traits. `CopyMethod` is persisted
//! in every run record: its serde form is part of the ledger's contract.

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use url::Url;

/// A validated relative path inside the destination (`/`-separated, no `..`, no empty segments).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectPath(String);

impl ObjectPath {
    pub fn new(p: impl Into<String>) -> Result<Self, StorageError> {
        let p = p.into();
        let ok = !p.is_empty()
            && p.len() <= 1024
            && !p.starts_with('/')
            && p.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && !seg
                        .chars()
                        .any(|c| c.is_control() || c == '\\' || c == '?' || c == '#')
            });
        if ok {
            Ok(Self(p))
        } else {
            Err(StorageError::InvalidPath(p.chars().take(200).collect()))
        }
    }

    pub fn join(&self, rest: &str) -> Result<Self, StorageError> {
        Self::new(format!("{}/{}", self.0, rest))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl TryFrom<String> for ObjectPath {
    type Error = StorageError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<ObjectPath> for String {
    fn from(p: ObjectPath) -> String {
        p.0
    }
}

impl std::fmt::Display for ObjectPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a copy came from; kept with the copy so a rerun can recognise it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceIdentity {
    pub manifest_etag: String,
    pub blob_name: String,
}

/// How the bytes moved (a run-record contract).
pub use crate::contracts::run::CopyMethod;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyOutcome {
    pub bytes: u64,
    /// Hex MD5 of the copied bytes, when computed or reported by storage.
    pub md5: Option<String>,
    /// JSON lines in the partition, when the bytes passed through us.
    pub rows: Option<u64>,
    pub method: CopyMethod,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid destination path {0:?}")]
    InvalidPath(String),
    /// The source refused our SAS (expired or revoked): refresh the manifest and try again.
    #[error(
        "the source refused access ({status} {code}); the manifest's SAS has probably expired"
    )]
    SourceForbidden { status: u16, code: String },
    #[error("the source blob does not exist ({0})")]
    SourceNotFound(String),
    #[error("reading the source failed: {0}")]
    Source(String),
    #[error("the copy did not verify: {0}")]
    Verification(String),
    #[error("writing to the destination failed: {0}")]
    Destination(String),
    #[error("ledger storage failed: {0}")]
    Ledger(String),
}

impl StorageError {
    pub fn is_sas_expired(&self) -> bool {
        matches!(self, StorageError::SourceForbidden { .. })
    }
}

/// The partner's storage for exported data.
#[async_trait]
pub trait Destination: Send + Sync + std::fmt::Debug {
    /// Copies the blob at `source` (a SAS URL) to `dest`, verifying it; idempotent.
    async fn copy_from_url(
        &self,
        source: &Url,
        dest: &ObjectPath,
        identity: &SourceIdentity,
    ) -> Result<CopyOutcome, StorageError>;

    /// Writes a small document (e.g. `_manifest.json`) atomically.
    async fn put_bytes(
        &self,
        dest: &ObjectPath,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError>;

    /// Where `dest` lives, for events and status answers (a path or a URL without SAS).
    fn locate(&self, dest: &ObjectPath) -> String;

    /// Streams the stored object `src` into the local file `file` (created or truncated), with
    /// bounded memory; returns its length. Used to derive other formats from a copy.
    async fn fetch_to_file(
        &self,
        src: &ObjectPath,
        _file: &std::path::Path,
    ) -> Result<u64, StorageError> {
        Err(StorageError::Destination(format!(
            "this destination cannot read back {src}"
        )))
    }

    /// Stores the local file `file` at `dest`; it appears whole or not at all. Returns its
    /// length.
    async fn put_file(
        &self,
        dest: &ObjectPath,
        _file: &std::path::Path,
        _content_type: &str,
    ) -> Result<u64, StorageError> {
        Err(StorageError::Destination(format!(
            "this destination cannot store files ({dest})"
        )))
    }

    /// Deletes every object below `folder` (a superseded data version folder) and returns how
    /// many it deleted. Idempotent: a folder already gone deletes nothing.
    async fn delete_folder(&self, folder: &ObjectPath) -> Result<u64, StorageError> {
        Err(StorageError::Destination(format!(
            "this destination cannot delete {folder}"
        )))
    }
}

/// An opaque version tag for compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ETag(pub String);

/// Small JSON documents with create-if-absent and replace-if-unchanged.
#[async_trait]
pub trait LedgerStore: Send + Sync + std::fmt::Debug {
    async fn read(&self, key: &ObjectPath) -> Result<Option<(Vec<u8>, ETag)>, StorageError>;
    /// `Ok(None)` when the key already exists.
    async fn create(&self, key: &ObjectPath, body: Vec<u8>) -> Result<Option<ETag>, StorageError>;
    /// `Ok(None)` when the stored version is no longer `if_match`.
    async fn replace(
        &self,
        key: &ObjectPath,
        body: Vec<u8>,
        if_match: &ETag,
    ) -> Result<Option<ETag>, StorageError>;
    /// Keys directly or indirectly below `prefix`.
    async fn list(&self, prefix: &ObjectPath) -> Result<Vec<ObjectPath>, StorageError>;
    /// Deletes `key`; `Ok(false)` when it was already gone.
    async fn delete(&self, key: &ObjectPath) -> Result<bool, StorageError>;
    /// Keys below `folder` whose path under it starts with `starts` (`runs` + `202612` lists
    /// one month's run records). Stores that can filter by prefix server-side override this,
    /// so the cost follows the keys that match rather than everything in the folder.
    async fn list_starting(
        &self,
        folder: &ObjectPath,
        starts: &str,
    ) -> Result<Vec<ObjectPath>, StorageError> {
        let skip = folder.as_str().len() + 1;
        Ok(self
            .list(folder)
            .await?
            .into_iter()
            .filter(|k| {
                k.as_str()
                    .get(skip..)
                    .is_some_and(|n| n.starts_with(starts))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_refuse_traversal() {
        assert!(ObjectPath::new("a/b/c.json.gz").is_ok());
        for bad in ["", "/a", "a//b", "a/../b", "a/./b", "a\\b", "a?b", "a/b\n"] {
            assert!(ObjectPath::new(bad).is_err(), "{bad:?} accepted");
        }
        let p = ObjectPath::new("x/y").unwrap();
        assert_eq!(p.join("z.json").unwrap().as_str(), "x/y/z.json");
        assert_eq!(p.file_name(), "y");
        assert!(p.join("../etc").is_err());
    }
}
