//! Reading a source blob through a SAS URL and verifying what passed through: length against
//! `Content-Length`, MD5 against `Content-MD5` when storage sends one, and the number of JSON
//! lines (gunzipped on the fly, so memory stays bounded by one chunk).

use std::io::Write;

use base64::Engine;
use md5::{Digest as _, Md5};
use url::Url;

use super::storage::{CopyMethod, CopyOutcome, StorageError};

/// The storage service version we speak (Azurite 3.35 accepts it; Azure does).
pub const STORAGE_API_VERSION: &str = "2025-11-05";

/// An open source blob.
pub struct SourceStream {
    pub response: reqwest::Response,
    pub expected_len: Option<u64>,
    pub expected_md5: Option<[u8; 16]>,
}

/// GETs the blob; maps 403 to [`StorageError::SourceForbidden`] so callers can refresh the SAS.
pub async fn open_source(
    client: &reqwest::Client,
    source: &Url,
) -> Result<SourceStream, StorageError> {
    let res = client
        .get(source.clone())
        .header("x-ms-version", STORAGE_API_VERSION)
        .send()
        .await
        .map_err(|e| StorageError::Source(e.without_url().to_string()))?;
    let status = res.status().as_u16();
    let code = res
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    match status {
        200 => {}
        401 | 403 => return Err(StorageError::SourceForbidden { status, code }),
        404 => {
            return Err(StorageError::SourceNotFound(if code.is_empty() {
                "404".into()
            } else {
                code
            }))
        }
        s => return Err(StorageError::Source(format!("HTTP {s} {code}"))),
    }
    let expected_md5 = res
        .headers()
        .get("content-md5")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .ok()
        })
        .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok());
    Ok(SourceStream {
        expected_len: res.content_length(),
        expected_md5,
        response: res,
    })
}

/// Counts newline-terminated records, plus a last line without a newline.
#[derive(Default)]
struct LineCounter {
    lines: u64,
    last: Option<u8>,
}

impl Write for LineCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lines += buf.iter().filter(|b| **b == b'\n').count() as u64;
        if let Some(b) = buf.last() {
            self.last = Some(*b);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Running digest of the bytes of one copy.
pub struct CopyDigest {
    md5: Md5,
    bytes: u64,
    gunzip: Option<flate2::write::MultiGzDecoder<LineCounter>>,
}

impl Default for CopyDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl CopyDigest {
    pub fn new() -> Self {
        Self {
            md5: Md5::new(),
            bytes: 0,
            gunzip: Some(flate2::write::MultiGzDecoder::new(LineCounter::default())),
        }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.md5.update(chunk);
        self.bytes += chunk.len() as u64;
        if let Some(g) = self.gunzip.as_mut() {
            if g.write_all(chunk).is_err() {
                // Not gzip after all: still copy the bytes faithfully, just without a row count.
                self.gunzip = None;
            }
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Checks length and MD5 against what the source announced.
    pub fn finish(
        self,
        expected_len: Option<u64>,
        expected_md5: Option<[u8; 16]>,
    ) -> Result<CopyOutcome, StorageError> {
        if let Some(want) = expected_len {
            if want != self.bytes {
                return Err(StorageError::Verification(format!(
                    "source announced {want} bytes, {} arrived",
                    self.bytes
                )));
            }
        }
        let md5: [u8; 16] = self.md5.finalize().into();
        if let Some(want) = expected_md5 {
            if want != md5 {
                return Err(StorageError::Verification(
                    "MD5 differs from the source's Content-MD5".into(),
                ));
            }
        }
        let rows = self
            .gunzip
            .and_then(|g| g.finish().ok())
            .map(|c| c.lines + u64::from(c.last.is_some_and(|b| b != b'\n')));
        Ok(CopyOutcome {
            bytes: self.bytes,
            md5: Some(hex::encode(md5)),
            rows,
            method: CopyMethod::Relay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;

    fn gz(s: &str) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(s.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn counts_rows_and_verifies() {
        let data = gz("{\"a\":1}\n{\"a\":2}\n{\"a\":3}");
        let mut d = CopyDigest::new();
        for c in data.chunks(7) {
            d.update(c);
        }
        let md5: [u8; 16] = Md5::digest(&data).into();
        let out = d.finish(Some(data.len() as u64), Some(md5)).unwrap();
        assert_eq!(out.rows, Some(3));
        assert_eq!(out.bytes, data.len() as u64);
        assert_eq!(out.md5.unwrap(), hex::encode(md5));
    }

    #[test]
    fn length_or_md5_mismatch_fails() {
        let data = gz("x\n");
        let mut d = CopyDigest::new();
        d.update(&data);
        assert!(d.finish(Some(data.len() as u64 + 1), None).is_err());
        let mut d = CopyDigest::new();
        d.update(&data);
        assert!(d.finish(None, Some([0; 16])).is_err());
    }

    #[test]
    fn non_gzip_still_copies_without_rows() {
        let mut d = CopyDigest::new();
        d.update(b"plain text\n");
        let out = d.finish(None, None).unwrap();
        assert_eq!(out.rows, None);
        assert_eq!(out.bytes, 11);
    }
}
