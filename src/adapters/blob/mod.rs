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

mod account;
mod destination;
mod errors;
mod ledger;
mod strategy;

pub use account::{BlobAccount, BlobAuth};
pub use destination::BlobDestination;
pub use ledger::BlobLedger;
pub use strategy::{BlobOptions, CopyStrategy, PUT_BLOB_FROM_URL_MAX};

/// Metadata keys recording where a copy came from (C# identifiers, as Azure requires).
pub const META_SOURCE_ETAG: &str = "pbe_source_etag";
pub const META_SOURCE_BLOB: &str = "pbe_source_blob";
pub const META_SOURCE_LENGTH: &str = "pbe_source_length";

#[cfg(test)]
mod tests {
    use super::account::*;
    use super::destination::*;
    use super::errors::*;
    use super::*;
    use crate::adapters::storage::ObjectPath;
    use crate::auth::{Secret, TokenSource};
    use azure_core::http::Url;
    use std::sync::Arc;

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
        let tokens: Arc<dyn TokenSource> = Arc::new(
            crate::auth::StaticTokenSource::new().with(crate::auth::Audience::Storage, "s"),
        );
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
