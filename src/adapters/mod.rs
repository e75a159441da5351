//! Adapters to the outside: Service Bus, Event Grid, partner storage (filesystem here; Azure
//! Blob Storage in `blob`), each behind a small trait with one production implementation.

pub mod blob;
pub mod certificate;
pub mod device_code;
pub mod entra;
pub mod event_file;
pub mod events;
pub mod filesystem;
pub mod identity;
pub mod memory_queue;
pub mod relay;
pub mod servicebus;
pub mod shared_key;
pub mod storage;
