//! Partner Center billing partitions (gzip JSON Lines, as Microsoft Graph's partner billing
//! exports deliver them) to typed Parquet and to a FOCUS-aligned Parquet view.
//!
//! - [`Schema`]: the documented columns of each [`Dataset`] and [`AttributeSet`] with their
//!   logical types (docs/schema.md is generated from it: [`schema_markdown`]).
//! - [`convert`] / [`convert_both`]: the streaming converter and its [`ConvertReport`] (exact
//!   sums, per customer and currency totals, unknown columns).
//! - The FOCUS mapping table (docs/focus.md: [`focus_markdown`]), FOCUS [`FOCUS_VERSION`].
//! - [`generate`]: deterministic, realistic partitions for tests and benchmarks.
//!
//! This crate depends on no other crate of the workspace, so the product and the sandbox can
//! both use it.

mod bytes16;
mod calendar;
mod chunk;
mod columns;
mod convert;
mod dict;
mod dictionary_choice;
mod docs;
mod focus;
mod focus_lookup;
mod focus_rules;
pub mod generate;
mod scan;
mod schema;
mod unescape;
mod value;

pub use convert::{
    convert, convert_both, BillingPeriod, ColumnSum, ConvertOptions, ConvertReport, CurrencyCode,
    CustomerId, CustomerTotal, ProductKey, UnknownColumn, UnknownPlacement, View,
    FOCUS_UNKNOWN_PREFIX, LATE_UNKNOWN_COLUMN,
};
pub use docs::{focus_markdown, schema_markdown};
pub use focus::{source_type, FOCUS_VERSION, SOURCE_NAME};
pub use schema::{
    AttributeSet, BillingStatus, ColumnDef, ColumnType, Dataset, Schema, DECIMAL_PRECISION,
    DECIMAL_SCALE,
};
pub use value::Decimal;

/// Why a conversion failed; input errors carry the 1-based line number.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the input: {0}")]
    Read(#[source] std::io::Error),
    #[error("gzip: {0}")]
    Gzip(String),
    #[error("line {line}: not valid UTF-8")]
    Utf8 { line: u64 },
    #[error("line {line}: {reason}")]
    Syntax { line: u64, reason: String },
    #[error("line {line}, column {column}: {reason}")]
    Value {
        line: u64,
        column: String,
        reason: String,
    },
    #[error("line {line}: key {key:?} appears twice")]
    DuplicateKey { line: u64, key: String },
    #[error("line {line}: longer than the limit of {limit} bytes")]
    LineTooLong { line: u64, limit: usize },
    #[error("line {line}: more than {limit} distinct columns")]
    TooManyColumns { line: u64, limit: usize },
    #[error("writing the output: {0}")]
    Write(#[source] std::io::Error),
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("internal error: {0}")]
    Internal(&'static str),
}
