//! The use cases every front end shares: the timers, the HTTP functions, the `export` command
//! and the local runner plan, start and report through these functions, and only decode their
//! input and render the typed reports they return.
//!
//! - [`plans`]: what a timer firing (or `GET /api/plan`, or `export`) would start, per partner;
//! - [`starts`]: starting what was planned, each outcome kept;
//! - [`news`]: what planning found worth telling (discovery failed, invoices overdue, exports
//!   given up), each announced once;
//! - [`firing`]: a timer firing end to end;
//! - [`backfill`]: a range of billing months planned and started.

pub mod backfill;
pub mod firing;
pub mod news;
pub mod plans;
pub mod starts;
