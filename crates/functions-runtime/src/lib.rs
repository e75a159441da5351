//! Azure Functions custom-handler runtime: the HTTP server the host talks to, the invocation
//! envelope and its quirk-tolerant codec, typed trigger data, replies, and the function
//! catalogue handlers are registered against. Knows nothing of any product.

pub mod catalog;
pub mod codec;
pub mod invocation;
pub mod logs;
pub mod reply;
pub mod server;

pub use catalog::{FunctionSpec, TriggerBinding};
pub use invocation::{HttpRequestData, Invocation, ServiceBusDelivery, TimerInfo, TriggerError};
pub use reply::{HttpResponse, InvocationReply};
pub use server::{FunctionRouter, InvocationFailure, InvocationResult};
