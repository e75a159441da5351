//! The filesystem sink: partner storage as a local directory (local mode, or a mounted share).
//! Every write goes to a temporary file first and is renamed into place, so a reader never sees
//! half a partition and a crash leaves no torn file. The ledger serialises compare-and-swap with
//! an advisory file lock, which also holds across processes.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;
use url::Url;

use super::relay::{open_source, CopyDigest};
use super::storage::{
    CopyMethod, CopyOutcome, Destination, ETag, LedgerStore, ObjectPath, SourceIdentity,
    StorageError,
};

/// Hidden folder (beside the data) that remembers where each copy came from.
const COPY_RECORDS: &str = ".copies";

#[derive(Debug, Clone)]
pub struct FilesystemDestination {
    root: PathBuf,
    http: reqwest::Client,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CopyRecord {
    identity: SourceIdentity,
    outcome: CopyOutcome,
}

impl FilesystemDestination {
    pub fn new(root: impl Into<PathBuf>, http: reqwest::Client) -> Self {
        Self {
            root: root.into(),
            http,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, p: &ObjectPath) -> PathBuf {
        self.root.join(p.as_str())
    }

    /// The file for `dest` and its temporary sibling, with the folder created.
    async fn prepare_target(&self, dest: &ObjectPath) -> Result<(PathBuf, PathBuf), StorageError> {
        let path = self.path_of(dest);
        let dir = path.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| dest_err("creating", dir, e))?;
        let tmp = temp_sibling(&path);
        Ok((path, tmp))
    }

    fn record_of(&self, p: &ObjectPath) -> PathBuf {
        self.root
            .join(COPY_RECORDS)
            .join(format!("{}.json", p.as_str()))
    }

    async fn existing_copy(
        &self,
        dest: &ObjectPath,
        identity: &SourceIdentity,
    ) -> Option<CopyOutcome> {
        let rec: CopyRecord =
            serde_json::from_slice(&tokio::fs::read(self.record_of(dest)).await.ok()?).ok()?;
        let len = tokio::fs::metadata(self.path_of(dest)).await.ok()?.len();
        (rec.identity == *identity && len == rec.outcome.bytes).then_some(rec.outcome)
    }
}

fn dest_err(what: &str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Destination(format!("{what} {}: {e}", path.display()))
}

/// Writes `bytes` to `path` via a temporary sibling and a rename.
pub(crate) async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| dest_err("creating", dir, e))?;
    let tmp = temp_sibling(path);
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| dest_err("creating", &tmp, e))?;
    f.write_all(bytes)
        .await
        .map_err(|e| dest_err("writing", &tmp, e))?;
    f.sync_all()
        .await
        .map_err(|e| dest_err("syncing", &tmp, e))?;
    drop(f);
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(|e| dest_err("renaming into", path, e))
}

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}.{}.partial", uuid::Uuid::new_v4().simple()))
}

#[async_trait]
impl Destination for FilesystemDestination {
    async fn copy_from_url(
        &self,
        source: &Url,
        dest: &ObjectPath,
        identity: &SourceIdentity,
    ) -> Result<CopyOutcome, StorageError> {
        if let Some(prev) = self.existing_copy(dest, identity).await {
            return Ok(CopyOutcome {
                method: CopyMethod::Skipped,
                ..prev
            });
        }
        let src = open_source(&self.http, source).await?;
        let (path, tmp) = self.prepare_target(dest).await?;
        let result = async {
            let mut file = tokio::io::BufWriter::with_capacity(
                256 * 1024,
                tokio::fs::File::create(&tmp)
                    .await
                    .map_err(|e| dest_err("creating", &tmp, e))?,
            );
            let mut digest = CopyDigest::new();
            let mut body = src.response.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| StorageError::Source(e.without_url().to_string()))?;
                digest.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|e| dest_err("writing", &tmp, e))?;
            }
            file.flush()
                .await
                .map_err(|e| dest_err("flushing", &tmp, e))?;
            file.get_ref()
                .sync_all()
                .await
                .map_err(|e| dest_err("syncing", &tmp, e))?;
            digest.finish(src.expected_len, src.expected_md5)
        }
        .await;
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| dest_err("renaming into", &path, e))?;
        let record = CopyRecord {
            identity: identity.clone(),
            outcome: outcome.clone(),
        };
        let rec_bytes =
            serde_json::to_vec(&record).map_err(|e| StorageError::Destination(e.to_string()))?;
        write_atomically(&self.record_of(dest), &rec_bytes).await?;
        Ok(outcome)
    }

    async fn put_bytes(
        &self,
        dest: &ObjectPath,
        bytes: Bytes,
        _content_type: &str,
    ) -> Result<(), StorageError> {
        write_atomically(&self.path_of(dest), &bytes).await
    }

    fn locate(&self, dest: &ObjectPath) -> String {
        self.path_of(dest).display().to_string()
    }

    async fn fetch_to_file(&self, src: &ObjectPath, file: &Path) -> Result<u64, StorageError> {
        let from = self.path_of(src);
        tokio::fs::copy(&from, file)
            .await
            .map_err(|e| dest_err("reading", &from, e))
    }

    async fn put_file(
        &self,
        dest: &ObjectPath,
        file: &Path,
        _content_type: &str,
    ) -> Result<u64, StorageError> {
        // Copied beside the target and renamed: readers never see half a file.
        let (path, tmp) = self.prepare_target(dest).await?;
        let len = match tokio::fs::copy(file, &tmp).await {
            Ok(n) => n,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(dest_err("writing", &tmp, e));
            }
        };
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| dest_err("renaming into", &path, e))?;
        Ok(len)
    }

    async fn delete_folder(&self, folder: &ObjectPath) -> Result<u64, StorageError> {
        let data = self.path_of(folder);
        let records = self.root.join(COPY_RECORDS).join(folder.as_str());
        tokio::task::spawn_blocking(move || {
            let deleted = remove_tree(&data)?;
            remove_tree(&records)?;
            Ok(deleted)
        })
        .await
        .map_err(|e| StorageError::Destination(format!("deleting a folder: {e}")))?
    }
}

/// Removes `dir` and everything below it; returns the files removed (0 when it is absent).
fn remove_tree(dir: &Path) -> Result<u64, StorageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(dest_err("listing", dir, e)),
    };
    let mut files = 0;
    for entry in entries {
        let entry = entry.map_err(|e| dest_err("listing", dir, e))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| dest_err("inspecting", &path, e))?;
        if kind.is_dir() {
            files += remove_tree(&path)?;
        } else {
            match std::fs::remove_file(&path) {
                Ok(()) => files += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(dest_err("deleting", &path, e)),
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(files),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(files),
        Err(e) => Err(dest_err("deleting", dir, e)),
    }
}

/// Ledger documents as files under a directory.
#[derive(Debug, Clone)]
pub struct FilesystemLedger {
    root: PathBuf,
}

impl FilesystemLedger {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path_of(&self, key: &ObjectPath) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// Runs `f` holding the ledger's exclusive lock (blocking I/O, off the async threads).
    async fn locked<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Path) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&root)
                .map_err(|e| StorageError::Ledger(format!("creating {}: {e}", root.display())))?;
            let lock_path = root.join(".lock");
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| {
                    StorageError::Ledger(format!("opening {}: {e}", lock_path.display()))
                })?;
            lock.lock().map_err(|e| {
                StorageError::Ledger(format!("locking {}: {e}", lock_path.display()))
            })?;
            let out = f(&root);
            let _ = lock.unlock();
            out
        })
        .await
        .map_err(|e| StorageError::Ledger(format!("ledger task failed: {e}")))?
    }
}

fn etag_of(bytes: &[u8]) -> ETag {
    ETag(hex::encode(Md5::digest(bytes)))
}

fn read_file(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::Ledger(format!(
            "reading {}: {e}",
            path.display()
        ))),
    }
}

fn write_file_sync(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let err = |what: &str, e: std::io::Error| {
        StorageError::Ledger(format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err("creating folder for", e))?;
    }
    let tmp = temp_sibling(path);
    let mut f = std::fs::File::create(&tmp).map_err(|e| err("creating temp file for", e))?;
    f.write_all(bytes).map_err(|e| err("writing", e))?;
    f.sync_all().map_err(|e| err("syncing", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| err("renaming into", e))
}

#[async_trait]
impl LedgerStore for FilesystemLedger {
    async fn read(&self, key: &ObjectPath) -> Result<Option<(Vec<u8>, ETag)>, StorageError> {
        let path = self.path_of(key);
        // Renames are atomic, so an unlocked read sees a whole document.
        Ok(tokio::task::spawn_blocking(move || read_file(&path))
            .await
            .map_err(|e| StorageError::Ledger(e.to_string()))??
            .map(|b| {
                let t = etag_of(&b);
                (b, t)
            }))
    }

    async fn create(&self, key: &ObjectPath, body: Vec<u8>) -> Result<Option<ETag>, StorageError> {
        let path = self.path_of(key);
        self.locked(move |_| {
            if read_file(&path)?.is_some() {
                return Ok(None);
            }
            write_file_sync(&path, &body)?;
            Ok(Some(etag_of(&body)))
        })
        .await
    }

    async fn replace(
        &self,
        key: &ObjectPath,
        body: Vec<u8>,
        if_match: &ETag,
    ) -> Result<Option<ETag>, StorageError> {
        let path = self.path_of(key);
        let want = if_match.clone();
        self.locked(move |_| {
            match read_file(&path)? {
                Some(cur) if etag_of(&cur) == want => {}
                _ => return Ok(None),
            }
            write_file_sync(&path, &body)?;
            Ok(Some(etag_of(&body)))
        })
        .await
    }

    async fn delete(&self, key: &ObjectPath) -> Result<bool, StorageError> {
        let path = self.path_of(key);
        self.locked(move |_| match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::Ledger(format!(
                "deleting {}: {e}",
                path.display()
            ))),
        })
        .await
    }

    async fn list(&self, prefix: &ObjectPath) -> Result<Vec<ObjectPath>, StorageError> {
        let root = self.root.clone();
        let start = self.path_of(prefix);
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![start];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(StorageError::Ledger(format!(
                            "listing {}: {e}",
                            dir.display()
                        )))
                    }
                };
                for entry in entries.flatten() {
                    let p = entry.path();
                    let name = entry.file_name();
                    if name.to_string_lossy().starts_with('.') {
                        continue;
                    }
                    if p.is_dir() {
                        stack.push(p);
                    } else if let Ok(rel) = p.strip_prefix(&root) {
                        if let Ok(key) = ObjectPath::new(rel.to_string_lossy().replace('\\', "/")) {
                            out.push(key);
                        }
                    }
                }
            }
            out.sort();
            Ok(out)
        })
        .await
        .map_err(|e| StorageError::Ledger(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    // Concurrency is checked for every ledger alike in tests/filesystem_ledger.rs.
    use super::*;

    #[tokio::test]
    async fn ledger_create_and_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let l = FilesystemLedger::new(dir.path());
        let k = ObjectPath::new("runs/r1.json").unwrap();
        assert!(l.read(&k).await.unwrap().is_none());
        let t1 = l.create(&k, b"one".to_vec()).await.unwrap().unwrap();
        assert!(
            l.create(&k, b"again".to_vec()).await.unwrap().is_none(),
            "second create must lose"
        );
        let t2 = l.replace(&k, b"two".to_vec(), &t1).await.unwrap().unwrap();
        assert!(
            l.replace(&k, b"stale".to_vec(), &t1)
                .await
                .unwrap()
                .is_none(),
            "stale etag must lose"
        );
        let (body, tag) = l.read(&k).await.unwrap().unwrap();
        assert_eq!(body, b"two");
        assert_eq!(tag, t2);
        assert_eq!(
            l.list(&ObjectPath::new("runs").unwrap()).await.unwrap(),
            vec![k]
        );
    }
}
