//! Local mode: stand-ins for the cloud services the pipeline talks to, served on loopback so the
//! production clients can be exercised end to end without Azure or Microsoft Graph.

pub mod graph_sandbox;
