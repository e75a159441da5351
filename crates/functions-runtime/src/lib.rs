//! Azure Functions custom-handler runtime: server, envelope, tolerant codec, replies. Knows
//! nothing of billing.

pub mod codec;
pub mod invocation;
pub mod reply;
pub mod server;

pub use invocation::{HttpRequestData, Invocation, ServiceBusDelivery, TimerInfo, TriggerError};
pub use reply::{HttpResponse, InvocationReply};
pub use server::{FunctionRouter, InvocationFailure, InvocationResult};
