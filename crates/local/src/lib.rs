//! The embedded runtime for `local` mode and tests: a Functions-host emulator, a Service Bus
//! stand-in, an Event Grid stand-in and the Graph partner billing sandbox, all on loopback,
//! with the production code talking to them over HTTP exactly as it talks to Azure.

pub mod azurite;
pub mod entra;
pub mod eventgrid;
pub mod graph_sandbox;
pub mod handler_binary;
pub mod host;
pub mod identity;
pub mod layout;
pub mod ncrontab;
pub mod run;
pub mod script_root;
pub mod server;
pub mod servicebus;
pub mod tokens;
