//! The `LedgerStore` contract every implementation must keep, checked the same way for each.

use std::sync::Arc;

use partner_billing_export::adapters::storage::{LedgerStore, ObjectPath};

/// `writers` tasks each add 1 to a counter `increments` times by read / replace-if-unchanged,
/// retrying on conflict: compare-and-swap must never lose an update.
pub async fn concurrent_increments_never_lose_an_update<L: LedgerStore + 'static>(
    ledger: Arc<L>,
    key: ObjectPath,
    writers: u32,
    increments: u32,
) {
    ledger.create(&key, b"0".to_vec()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (l, k) = (ledger.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..increments {
                loop {
                    let (b, t) = l.read(&k).await.unwrap().unwrap();
                    let n: u32 = std::str::from_utf8(&b).unwrap().parse().unwrap();
                    if l.replace(&k, (n + 1).to_string().into_bytes(), &t)
                        .await
                        .unwrap()
                        .is_some()
                    {
                        break;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let want = (writers * increments).to_string();
    assert_eq!(ledger.read(&key).await.unwrap().unwrap().0, want.as_bytes());
}
