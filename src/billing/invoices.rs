//! Partner Center invoice discovery (CONTRACT: filled in by the billing-client work).
