//! The streaming converter: gzip JSON Lines in, zstd Parquet out, in bounded batches.
//!
//! Two stages joined by a one-batch channel: gzip decoding and line scanning into column
//! buffers (calling thread), and Parquet encoding (encoder thread, which encodes the typed
//! view on a second thread while it derives the FOCUS view). Each output file is written by a
//! thread of its own (`output`), so no stage waits for the file system. Decoding has no thread
//! of its own: on two cores a fourth busy thread left the parser waiting for decoded input
//! (measured: 4% more wall time, more CPU and 2 MiB more memory). At most three batches of
//! parsed rows exist at once (filling, queued, encoding), plus the compressed pages of the
//! open row group of each view and a few megabytes queued for each writer, so memory is
//! bounded by the batch and row-group limits, not by the input size.
//!
//! Unknown keys: Parquet needs its schema before the first batch is written, so keys not
//! in the schema that appear while the first batch fills become their own string columns
//! (after the known ones; earlier rows get null). A key first seen later is kept in the last
//! column, `x_UnknownColumns`: a JSON object of such keys with their values exactly as they
//! appeared. Both kinds are listed in the report; nothing is dropped.
//!
//! `parse` turns lines into column buffers, `encode` writes them as Parquet; this module holds
//! the options and report types and runs the threads.

use std::io::{Read, Write};
use std::sync::mpsc::{channel, sync_channel};
use std::thread;

use tracing::info;

mod encode;
mod gzip;
mod key_index;
mod output;
mod parse;
mod recent;

use crate::columns::ColBuf;
use crate::schema::{BillingStatus, Schema};
use crate::value::Decimal;
use crate::Error;
use encode::encode_loop;
use gzip::Inflater;
use output::Pipe;
use parse::Parser;

/// Name of the column holding keys first seen after the first batch.
pub const LATE_UNKNOWN_COLUMN: &str = "x_UnknownColumns";
/// Prefix of unknown columns in the FOCUS view (FOCUS extension columns start with `x_`).
pub const FOCUS_UNKNOWN_PREFIX: &str = "x_PC_";

/// Which Parquet file [`convert`] writes ([`convert_both`] writes both in one pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Microsoft's columns, typed ([`Schema`]).
    Typed,
    /// FOCUS-aligned columns (docs/focus.md).
    Focus,
}

/// Limits and settings of a conversion; `Default` suits Microsoft's partitions.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub view: View,
    /// Recorded in the FOCUS view as `x_BillingStatus`.
    pub billing_status: BillingStatus,
    /// The FOCUS view's BillingPeriodStart/End for every row: the invoice's billing period
    /// (billed exports) or the export's period (unbilled). Without it, each row's period is
    /// derived from its charge dates (docs/focus.md).
    pub billing_period: Option<BillingPeriod>,
    /// A Parquet row group closes at this many rows...
    pub row_group_rows: usize,
    /// ...or when its compressed pages, held in memory until it is written, reach this many
    /// bytes (per view).
    pub row_group_encoded_bytes: usize,
    /// Parsed rows go to the encoder in batches of at most this many bytes of JSON (the
    /// memory bound: at most three batches exist at once). A row group spans many batches.
    pub row_group_bytes: usize,
    /// Longer lines are an error (hostile input).
    pub max_line_bytes: usize,
    /// Known plus unknown columns plus distinct late keys above this are an error.
    pub max_columns: usize,
    /// zstd level of the Parquet pages.
    pub zstd_level: i32,
    /// Also split the per-customer totals by product (`ProductId`, `SkuId`): what matching
    /// billed usage with the invoice's Azure lines needs. Off, one total per customer.
    pub totals_by_product: bool,
    /// The FOCUS view holds only the Tax rows of the charges, not the charges: for charges
    /// whose detail lands from another file that carries no tax (an invoice's Azure lines,
    /// detailed by billed usage).
    pub tax_rows_only: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            view: View::Typed,
            billing_status: BillingStatus::Billed,
            billing_period: None,
            // Typed and FOCUS in one pass peak at 35 MiB on the converter's bench. Batches of
            // 640 KiB of JSON (a few hundred rows), against 3 MiB: 8% less CPU and 11% less
            // wall time there, likely as a batch stays in cache from parser to encoders
            // (384 KiB and 1 MiB were slower; docs/performance.md).
            row_group_rows: 64 * 1024,
            row_group_encoded_bytes: 24 << 20,
            row_group_bytes: 640 << 10,
            max_line_bytes: 1 << 20,
            max_columns: 512,
            zstd_level: 1,
            totals_by_product: false,
            tax_rows_only: false,
        }
    }
}

/// A billing period: its first day and the day after its last, each (year, month, day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingPeriod {
    pub start: (i64, u32, u32),
    pub end: (i64, u32, u32),
}

/// A CSP customer's Entra tenant id, as written in the export.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CustomerId(pub String);

/// An ISO 4217 currency code, as written in the export.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CurrencyCode(pub String);

/// Where an unknown key's values went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnknownPlacement {
    /// Its own string column (seen in the first batch).
    Column,
    /// Inside the `x_UnknownColumns` JSON column (first seen later).
    LateKeys,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownColumn {
    pub name: String,
    pub placement: UnknownPlacement,
}

/// Exact total of one decimal column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSum {
    pub column: &'static str,
    pub sum: Decimal,
}

/// A product as the reconciliation and usage files both name it: Microsoft matches usage
/// with reconciliation rows on these identifiers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProductKey {
    pub product_id: String,
    pub sku_id: String,
}

/// The invoice-relevant amounts of one customer in one currency (reconciliation: `Total`,
/// `Subtotal` and `PCToBCExchangeRate` by `Currency`; usage: `BillingPreTaxTotal` by
/// `BillingCurrency`), per product when [`ConvertOptions::totals_by_product`] is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerTotal {
    pub customer: CustomerId,
    pub currency: CurrencyCode,
    pub product: Option<ProductKey>,
    pub rows: u64,
    pub amounts: Vec<ColumnSum>,
}

/// One running total of [`CustomerTotal`] while rows are read.
struct Tally {
    customer: String,
    currency: String,
    product: Option<ProductKey>,
    rows: u64,
    amounts: Vec<i128>,
}

/// What a conversion read and wrote.
#[derive(Debug, Clone, Default)]
pub struct ConvertReport {
    pub rows: u64,
    /// Compressed bytes read.
    pub bytes_in: u64,
    /// JSON bytes after gzip decoding.
    pub bytes_json: u64,
    /// Parquet bytes written (typed view).
    pub bytes_out_typed: u64,
    /// Parquet bytes written (FOCUS view).
    pub bytes_out_focus: u64,
    /// Rows written to the FOCUS view: the charges plus their Tax rows.
    pub focus_rows: u64,
    pub row_groups: u32,
    /// Decimal values with more places than [`crate::DECIMAL_SCALE`] (such as
    /// `3.5999999999999998E-06`, a .NET double), stored rounded half to even. Sums and totals
    /// are of the stored values.
    pub rounded_values: u64,
    pub unknown_columns: Vec<UnknownColumn>,
    /// Every decimal column of the schema, in schema order.
    pub sums: Vec<ColumnSum>,
    /// Sorted by customer, then currency.
    pub customer_totals: Vec<CustomerTotal>,
}

/// Converts one gzip JSON Lines partition to the Parquet view chosen in `options`.
pub fn convert(
    input: impl Read + Send,
    schema: &Schema,
    output: impl Write + Send,
    options: &ConvertOptions,
) -> Result<ConvertReport, Error> {
    match options.view {
        View::Typed => run(input, schema, Some(output), None::<std::io::Sink>, options),
        View::Focus => run(input, schema, None::<std::io::Sink>, Some(output), options),
    }
}

/// Converts one partition to both views in a single pass.
pub fn convert_both(
    input: impl Read + Send,
    schema: &Schema,
    typed: impl Write + Send,
    focus: impl Write + Send,
    options: &ConvertOptions,
) -> Result<ConvertReport, Error> {
    run(input, schema, Some(typed), Some(focus), options)
}

/// The first error of the output writers (each joined, so every file is complete or failed).
fn writers_error<'s, const N: usize>(
    writers: [Option<thread::ScopedJoinHandle<'s, std::io::Result<()>>>; N],
) -> Option<Error> {
    let mut first = None;
    for w in writers.into_iter().flatten() {
        let e = match w.join() {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => Error::Write(e),
            Err(_) => Error::Internal("output writer panicked"),
        };
        first.get_or_insert(e);
    }
    first
}

/// One batch's columns in file order (known, then first-group unknowns) plus late keys.
struct Group {
    cols: Vec<ColBuf>,
    late: ColBuf,
    rows: usize,
}

enum ToEncoder {
    /// The column set is final: the unknown column names, in order.
    Open(Vec<String>),
    Group(Group),
    /// Normal end: write the footers.
    Finish,
}

/// The files not opened yet, as the pipes to their writer threads.
struct Outputs {
    typed: Option<Pipe>,
    focus: Option<Pipe>,
}

fn run<T: Write + Send, F: Write + Send>(
    input: impl Read + Send,
    schema: &Schema,
    typed: Option<T>,
    focus: Option<F>,
    options: &ConvertOptions,
) -> Result<ConvertReport, Error> {
    thread::scope(|s| {
        let (typed, typed_writer) = typed.map(|w| output::spawn(s, w)).unzip();
        let (focus, focus_writer) = focus.map(|w| output::spawn(s, w)).unzip();
        // One queued group lets the parser run ahead while the encoder is slower on a group
        // (measured: ~20% faster than a rendezvous, ~12 MiB more resident).
        let (group_tx, group_rx) = sync_channel::<ToEncoder>(1);
        let (back_tx, back_rx) = channel::<Group>();
        let outputs = Outputs { typed, focus };
        let encoder = s.spawn(move || encode_loop(schema, options, outputs, group_rx, back_tx));

        let mut parser = Parser::new(schema, options);
        let mut inflater = Inflater::new(input);
        let parsed = parser.parse_all(&mut inflater, &group_tx, &back_rx);
        let bytes_in = inflater.bytes_in;
        let sent = match parsed {
            Ok(()) => parser.finish(&group_tx),
            Err(e) => {
                drop(group_tx);
                // The encoder never writes a footer without Finish. When it stopped first,
                // its error is the cause (or its writer's, when that stopped it).
                if let (Error::Internal(_), Ok(Err(cause))) = (&e, encoder.join()) {
                    return Err(writers_error([typed_writer, focus_writer]).unwrap_or(cause));
                }
                return Err(e);
            }
        };
        drop(group_tx);
        let encoded = encoder
            .join()
            .map_err(|_| Error::Internal("encoder panicked"));
        // A writer's failure is the cause of the encoder's (a closed pipe), so it comes first.
        if let Some(e) = writers_error([typed_writer, focus_writer]) {
            return Err(e);
        }
        let written = encoded??;
        sent.map_err(|_| Error::Internal("encoder stopped early"))?;
        let mut report = parser.into_report(
            bytes_in,
            written.typed_bytes,
            written.focus_bytes,
            written.row_groups,
        );
        report.focus_rows = written.focus_rows;
        info!(
            rows = report.rows,
            bytes_in = report.bytes_in,
            bytes_json = report.bytes_json,
            row_groups = report.row_groups,
            rounded_values = report.rounded_values,
            unknown = report.unknown_columns.len(),
            "converted partition"
        );
        Ok(report)
    })
}
