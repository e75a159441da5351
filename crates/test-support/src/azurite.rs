//! Azurite for tests: a thin layer over the project's launcher (`local::azurite`, which also
//! serves `local --azurite`), so there is one account-SAS signer and one way to start it.
//! Azurite must be installed in `node_modules` (the project's test script runs `npm ci`; by
//! hand: `npm ci` in the repo root). A missing Azurite fails the test with that instruction.

use partner_billing_export::adapters::blob::BlobAccount;
use partner_billing_export::auth::Secret;
use partner_billing_local::azurite::{self as launcher, DEV_ACCOUNT, PARTNER_ACCOUNT};
use time::OffsetDateTime;
use url::Url;

/// The emulator's documented development account plays Microsoft's export storage.
pub const SOURCE_ACCOUNT: &str = DEV_ACCOUNT;
/// A second account (generated key) plays the partner's storage.
pub const DEST_ACCOUNT: &str = PARTNER_ACCOUNT;

pub struct Azurite {
    inner: launcher::Azurite,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Azurite {
    /// Starts Azurite on a free loopback port with a fresh data folder; it is killed on drop.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let inner = launcher::Azurite::start(root, dir.path())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{e:#}\nThe Azure blob tests need Azurite: run scripts/test.sh, or `npm ci` in {}",
                    root.display()
                )
            });
        Self {
            port: inner.blob_port,
            inner,
            _dir: dir,
        }
    }

    pub fn account_url(&self, account: &str) -> Url {
        self.inner.account_url(account)
    }

    /// An account SAS (blob service; service, container and object level).
    pub fn account_sas(&self, account: &str, permissions: &str, expiry: OffsetDateTime) -> String {
        self.inner.account(account).sas(permissions, expiry)
    }

    /// The account with a full-permission SAS, valid for an hour.
    pub fn sas_account(&self, account: &str) -> BlobAccount {
        let sas = self.account_sas(
            account,
            "rwdlacup",
            OffsetDateTime::now_utc() + time::Duration::hours(1),
        );
        BlobAccount::with_sas(&self.account_url(account), Secret::new(sas)).unwrap()
    }

    /// The URL of a blob with a SAS in the query, as a Graph manifest would give it.
    pub fn blob_sas_url(&self, account: &str, container: &str, blob: &str, sas: &str) -> Url {
        let mut u = self.account_url(account);
        u.path_segments_mut()
            .unwrap()
            .push(container)
            .extend(blob.split('/'));
        u.set_query(Some(sas));
        u
    }
}
