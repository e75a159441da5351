//! `Retry-After` parsing (CONTRACT: filled in by the billing-client work).
