//! Parsing and validating manifests (CONTRACT: filled in by the billing-client work).
