//! The filesystem ledger keeps the `LedgerStore` contract under concurrent writers.

use std::sync::Arc;

use partner_billing_export::adapters::filesystem::FilesystemLedger;
use partner_billing_export::adapters::storage::ObjectPath;

#[tokio::test]
async fn concurrent_increments_never_lose_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(FilesystemLedger::new(dir.path()));
    test_support::ledger::concurrent_increments_never_lose_an_update(
        ledger,
        ObjectPath::new("counter").unwrap(),
        8,
        10,
    )
    .await;
}
