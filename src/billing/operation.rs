//! Parsing operation responses (CONTRACT: filled in by the billing-client work).
