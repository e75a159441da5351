//! Copy strategies and tuning knobs of the blob destination.

use std::time::Duration;

pub(super) const MIB: u64 = 1024 * 1024;
/// Largest source Put Blob From URL accepts.
pub const PUT_BLOB_FROM_URL_MAX: u64 = 5000 * MIB;
/// Largest block Put Block From URL accepts.
pub(super) const BLOCK_FROM_URL_MAX: u64 = 4000 * MIB;
/// Most blocks one block blob may have.
pub(super) const MAX_BLOCKS: u64 = 50_000;

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
