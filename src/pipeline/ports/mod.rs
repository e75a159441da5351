//! Ports: the services the pipeline needs, as traits and the technology-neutral types they
//! speak (queue messages, CloudEvents, storage paths and copy outcomes). The pipeline depends
//! on these only; `adapters` implement them for Service Bus, Event Grid, the filesystem and
//! Azure Blob Storage, and `app` wires one implementation of each.

pub mod events;
pub mod queue;
pub mod storage;
