//! The storage port (`pipeline::ports::storage`), re-exported beside the adapters that implement
//! it (`filesystem`, `blob`) for the code that wires them.

pub use crate::pipeline::ports::storage::*;
