//! The streaming converter: gzip JSON Lines in, zstd Parquet out, in bounded row groups.
//!
//! Three threads in a pipeline, each bounded by a small channel: gzip decoding (reader thread),
//! line scanning into column buffers (calling thread) and Parquet encoding (encoder thread).
//! At most three row groups exist at once (filling, queued, encoding), so memory is bounded by
//! the row-group limits, not by the input size.
//!
//! Unknown keys: Parquet needs its schema before the first row group is written, so keys not
//! in the schema that appear while the first row group fills become their own string columns
//! (after the known ones; earlier rows get null). A key first seen later is kept in the last
//! column, `x_UnknownColumns`: a JSON object of such keys with their values exactly as they
//! appeared. Both kinds are listed in the report; nothing is dropped.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread;

use tracing::{debug, info};

use crate::columns::{ColBuf, Sink, Values};
use crate::focus::{self, FOCUS_VERSION};
use crate::scan::{unescape, Scanner, Token};
use crate::schema::{BillingStatus, ColumnType, Schema};
use crate::value::{parse_date, parse_timestamp, Decimal};
use crate::Error;

/// Name of the column holding keys first seen after the first row group.
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
    /// A row group closes at this many rows...
    pub row_group_rows: usize,
    /// ...or when its lines add up to this many bytes of JSON (the memory bound).
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
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            view: View::Typed,
            billing_status: BillingStatus::Billed,
            row_group_rows: 128 * 1024,
            row_group_bytes: 12 << 20,
            max_line_bytes: 1 << 20,
            max_columns: 512,
            zstd_level: 1,
            totals_by_product: false,
        }
    }
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
    /// Its own string column (seen in the first row group).
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
    pub row_groups: u32,
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

/// Decoded JSON handed from the reader thread: a buffer and how much of it is filled.
type Chunk = (Vec<u8>, usize);
/// Small enough that the chunks in flight stay a few MiB, large enough to amortise hand-offs.
const CHUNK: usize = 256 << 10;

/// Reader thread: reads the input and inflates gzip members (concatenated members allowed).
fn inflate_loop(
    mut input: impl Read,
    tx: SyncSender<Result<Chunk, Error>>,
    recycle: Receiver<Vec<u8>>,
) -> u64 {
    let mut bytes_in = 0u64;
    let result = (|| -> Result<(), Error> {
        let mut inf = zlib_rs::Inflate::new(true, 31);
        let mut inbuf = vec![0u8; 256 * 1024];
        let (mut ipos, mut ilen) = (0usize, 0usize);
        // Whether the current gzip member has ended (an empty input is an empty partition).
        let mut ended = true;
        let mut started = false;
        let mut eof = false;
        while !eof {
            let mut out = recycle.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
            let mut filled = 0;
            while filled < out.len() {
                if ipos == ilen {
                    ilen = input.read(&mut inbuf).map_err(Error::Read)?;
                    ipos = 0;
                    bytes_in += ilen as u64;
                    if ilen == 0 {
                        eof = true;
                        break;
                    }
                }
                if ended {
                    if started {
                        inf = zlib_rs::Inflate::new(true, 31);
                    }
                    started = true;
                    ended = false;
                }
                let (in0, out0) = (inf.total_in(), inf.total_out());
                let status = inf
                    .decompress(
                        &inbuf[ipos..ilen],
                        &mut out[filled..],
                        zlib_rs::InflateFlush::NoFlush,
                    )
                    .map_err(|e| Error::Gzip(e.as_str().to_string()))?;
                ipos += (inf.total_in() - in0) as usize;
                filled += (inf.total_out() - out0) as usize;
                if status == zlib_rs::Status::StreamEnd {
                    ended = true;
                }
            }
            if eof && !ended {
                return Err(Error::Gzip("truncated gzip stream".into()));
            }
            if filled > 0 && tx.send(Ok((out, filled))).is_err() {
                // The parser stopped (its own error is reported).
                return Ok(());
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = tx.send(Err(e));
    }
    bytes_in
}

/// One row group's columns in file order (known, then first-group unknowns) plus late keys.
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

struct Outputs<T: Write + Send, F: Write + Send> {
    typed: Option<T>,
    focus: Option<F>,
}

fn run<T: Write + Send, F: Write + Send>(
    input: impl Read + Send,
    schema: &Schema,
    typed: Option<T>,
    focus: Option<F>,
    options: &ConvertOptions,
) -> Result<ConvertReport, Error> {
    let typed = typed.map(Counting::new);
    let focus = focus.map(Counting::new);
    thread::scope(|s| {
        let (chunk_tx, chunk_rx) = sync_channel::<Result<Chunk, Error>>(8);
        let (recycle_tx, recycle_rx) = channel::<Vec<u8>>();
        let reader = s.spawn(move || inflate_loop(input, chunk_tx, recycle_rx));
        // One queued group lets the parser run ahead while the encoder is slower on a group
        // (measured: ~20% faster than a rendezvous, ~12 MiB more resident).
        let (group_tx, group_rx) = sync_channel::<ToEncoder>(1);
        let (back_tx, back_rx) = channel::<Group>();
        let outputs = Outputs { typed, focus };
        let encoder = s.spawn(move || encode_loop(schema, options, outputs, group_rx, back_tx));

        let mut parser = Parser::new(schema, options);
        let parsed = parser.parse_all(&chunk_rx, &recycle_tx, &group_tx, &back_rx);
        drop(chunk_rx);
        let bytes_in = reader
            .join()
            .map_err(|_| Error::Internal("reader panicked"))?;
        let sent = match parsed {
            Ok(()) => parser.finish(&group_tx),
            Err(e) => {
                drop(group_tx);
                // The encoder never writes a footer without Finish. When it stopped first,
                // its error is the cause.
                if let (Error::Internal(_), Ok(Err(cause))) = (&e, encoder.join()) {
                    return Err(cause);
                }
                return Err(e);
            }
        };
        drop(group_tx);
        let (bytes_out_typed, bytes_out_focus, row_groups) = encoder
            .join()
            .map_err(|_| Error::Internal("encoder panicked"))??;
        sent.map_err(|_| Error::Internal("encoder stopped early"))?;
        let report = parser.into_report(bytes_in, bytes_out_typed, bytes_out_focus, row_groups);
        info!(
            rows = report.rows,
            bytes_in = report.bytes_in,
            bytes_json = report.bytes_json,
            row_groups = report.row_groups,
            unknown = report.unknown_columns.len(),
            "converted partition"
        );
        Ok(report)
    })
}

/// Parquet metadata shared by both views.
fn metadata(schema: &Schema, view: &str, unknown: &[String]) -> Vec<(String, String)> {
    let mut m = vec![
        ("billing_columnar.view".to_string(), view.to_string()),
        (
            "billing_columnar.dataset".to_string(),
            schema.dataset().to_string(),
        ),
        (
            "billing_columnar.attribute_set".to_string(),
            schema.attribute_set().to_string(),
        ),
        (
            "billing_columnar.unknown_columns".to_string(),
            unknown.join(","),
        ),
    ];
    if view == "focus" {
        m.push(("focus_version".to_string(), FOCUS_VERSION.to_string()));
    }
    m
}

/// Encoder thread: opens the sinks once the unknown columns are known, writes row groups.
fn encode_loop<T: Write + Send, F: Write + Send>(
    schema: &Schema,
    options: &ConvertOptions,
    mut outputs: Outputs<Counting<T>, Counting<F>>,
    rx: Receiver<ToEncoder>,
    back: Sender<Group>,
) -> Result<(u64, u64, u32), Error> {
    let mut typed: Option<Sink<Counting<T>>> = None;
    let mut focus_sink: Option<Sink<Counting<F>>> = None;
    let mut focus_cols = Vec::new();
    let mut groups = 0u32;
    // The column set arrives first; each file opens with its first row group (or at the end
    // of an input without rows), so that encodings can be chosen from real values.
    let mut unknown: Vec<String> = Vec::new();
    let typed_fields = |unknown: &[String]| {
        let mut fields: Vec<(String, ColumnType)> = schema
            .columns()
            .iter()
            .map(|c| (c.name.to_string(), c.ty))
            .collect();
        fields.extend(unknown.iter().map(|n| (n.clone(), ColumnType::String)));
        fields.push((LATE_UNKNOWN_COLUMN.to_string(), ColumnType::String));
        fields
    };
    let focus_fields = |unknown: &[String]| {
        let mut fields = focus::focus_fields();
        fields.extend(
            unknown
                .iter()
                .map(|n| (format!("{FOCUS_UNKNOWN_PREFIX}{n}"), ColumnType::String)),
        );
        fields.push((LATE_UNKNOWN_COLUMN.to_string(), ColumnType::String));
        fields
    };
    // Columns whose first row group is mostly distinct values are written without a
    // dictionary; with no row group, every column keeps it.
    let plain = |first: Option<&[&ColBuf]>, n: usize| match first {
        Some(cols) => cols.iter().map(|c| c.dictionary_useless()).collect(),
        None => vec![false; n],
    };
    let known = schema.columns().len();
    for msg in rx {
        match msg {
            ToEncoder::Open(u) => unknown = u,
            ToEncoder::Group(g) => {
                let mut refs: Vec<&ColBuf> = g.cols.iter().collect();
                refs.push(&g.late);
                if let Some(out) = outputs.typed.take() {
                    let md = metadata(schema, "typed", &unknown);
                    let p = plain(Some(&refs), refs.len());
                    typed = Some(Sink::new(
                        out,
                        &typed_fields(&unknown),
                        &p,
                        md,
                        options.zstd_level,
                    )?);
                }
                let with_focus = focus_sink.is_some() || outputs.focus.is_some();
                // With both views, the typed file is encoded on a second thread while this one
                // derives and encodes the FOCUS file: encoding both on one thread made it the
                // slowest stage of the pipeline.
                thread::scope(|s| -> Result<(), Error> {
                    let typed_job = match typed.as_mut() {
                        Some(sink) if with_focus => Some(s.spawn(|| sink.write_group(&refs))),
                        Some(sink) => {
                            sink.write_group(&refs)?;
                            None
                        }
                        None => None,
                    };
                    let focus_result = (|| -> Result<(), Error> {
                        if !with_focus {
                            return Ok(());
                        }
                        focus::derive(
                            schema,
                            &g.cols[..known],
                            g.rows,
                            options.billing_status,
                            &mut focus_cols,
                        )?;
                        let mut refs: Vec<&ColBuf> = focus_cols.iter().collect();
                        refs.extend(g.cols[known..].iter());
                        refs.push(&g.late);
                        if let Some(out) = outputs.focus.take() {
                            let md = metadata(schema, "focus", &unknown);
                            let p = plain(Some(&refs), refs.len());
                            focus_sink = Some(Sink::new(
                                out,
                                &focus_fields(&unknown),
                                &p,
                                md,
                                options.zstd_level,
                            )?);
                        }
                        if let Some(sink) = focus_sink.as_mut() {
                            sink.write_group(&refs)?;
                        }
                        Ok(())
                    })();
                    if let Some(job) = typed_job {
                        job.join()
                            .map_err(|_| Error::Internal("typed encoder panicked"))??;
                    }
                    focus_result
                })?;
                groups += 1;
                debug!(rows = g.rows, group = groups, "row group written");
                let _ = back.send(g);
            }
            ToEncoder::Finish => {
                if let Some(out) = outputs.typed.take() {
                    let fields = typed_fields(&unknown);
                    let p = plain(None, fields.len());
                    let md = metadata(schema, "typed", &unknown);
                    typed = Some(Sink::new(out, &fields, &p, md, options.zstd_level)?);
                }
                if let Some(out) = outputs.focus.take() {
                    let fields = focus_fields(&unknown);
                    let p = plain(None, fields.len());
                    let md = metadata(schema, "focus", &unknown);
                    focus_sink = Some(Sink::new(out, &fields, &p, md, options.zstd_level)?);
                }
                let t = typed.map(Sink::finish).transpose()?.map_or(0, |c| c.count);
                let f = focus_sink
                    .map(Sink::finish)
                    .transpose()?
                    .map_or(0, |c| c.count);
                return Ok((t, f, groups));
            }
        }
    }
    Err(Error::Internal("conversion aborted"))
}

/// A writer that counts what passes through.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W> Counting<W> {
    fn new(inner: W) -> Self {
        Self { inner, count: 0 }
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

const NO_COLUMN: u32 = u32::MAX;

/// Line scanning into column buffers, with the running sums.
struct Parser<'a> {
    schema: &'a Schema,
    options: &'a ConvertOptions,
    /// Names of all columns (known, then unknown) and their types.
    names: Vec<Box<[u8]>>,
    /// `"Name":` of each column, for the fast path of keys in their usual order (none for
    /// names that would need escaping).
    patterns: Vec<Option<Box<[u8]>>>,
    types: Vec<ColumnType>,
    exact: HashMap<Box<[u8]>, u32>,
    lower: HashMap<Box<[u8]>, u32>,
    /// Column seen at each key position last time: rows repeat the same key order.
    expect: Vec<u32>,
    /// Row id that last set each column (duplicate keys, nulls for missing keys).
    stamp: Vec<u64>,
    row_id: u64,
    /// After the first row group the column set is fixed.
    frozen: bool,
    late_names: Vec<String>,
    group: Group,
    group_bytes: usize,
    spare: Option<Group>,
    line_no: u64,
    rows: u64,
    bytes_json: u64,
    sums: Vec<i128>,
    totals_index: HashMap<Vec<u8>, usize>,
    totals: Vec<Tally>,
    invoice: (Option<usize>, Option<usize>, Vec<usize>),
    /// `ProductId` and `SkuId` columns when totals are split by product.
    product_cols: Option<(usize, usize)>,
    key_buf: Vec<u8>,
    late_buf: Vec<u8>,
    pending: Vec<u8>,
}

impl<'a> Parser<'a> {
    fn new(schema: &'a Schema, options: &'a ConvertOptions) -> Self {
        let mut p = Parser {
            schema,
            options,
            names: Vec::new(),
            patterns: Vec::new(),
            types: Vec::new(),
            exact: HashMap::new(),
            lower: HashMap::new(),
            expect: Vec::new(),
            stamp: Vec::new(),
            row_id: 0,
            frozen: false,
            late_names: Vec::new(),
            group: Group {
                cols: Vec::new(),
                late: ColBuf::new(ColumnType::String),
                rows: 0,
            },
            group_bytes: 0,
            spare: None,
            line_no: 0,
            rows: 0,
            bytes_json: 0,
            sums: vec![0; schema.columns().len()],
            totals_index: HashMap::new(),
            totals: Vec::new(),
            invoice: (None, None, Vec::new()),
            product_cols: None,
            key_buf: Vec::new(),
            late_buf: Vec::new(),
            pending: Vec::new(),
        };
        for c in schema.columns() {
            p.add_column(c.name, c.ty);
        }
        let (ccy, amounts) = schema.invoice_amounts();
        p.invoice = (
            schema.index_of("CustomerId"),
            schema.index_of(ccy),
            amounts.iter().filter_map(|a| schema.index_of(a)).collect(),
        );
        if options.totals_by_product {
            p.product_cols = schema.index_of("ProductId").zip(schema.index_of("SkuId"));
        }
        p
    }

    fn add_column(&mut self, name: &str, ty: ColumnType) -> u32 {
        let i = self.names.len() as u32;
        self.names.push(name.as_bytes().into());
        self.patterns.push(
            (!name.contains(['"', '\\']) && !name.chars().any(char::is_control))
                .then(|| format!("\"{name}\":").into_bytes().into()),
        );
        self.types.push(ty);
        self.exact.insert(name.as_bytes().into(), i);
        self.lower
            .entry(name.to_ascii_lowercase().into_bytes().into())
            .or_insert(i);
        self.stamp.push(0);
        let mut b = ColBuf::new(ty);
        for _ in 0..self.group.rows {
            b.push_null();
        }
        self.group.cols.push(b);
        i
    }

    fn unknown_names(&self) -> Vec<String> {
        self.names[self.schema.columns().len()..]
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    fn parse_all(
        &mut self,
        chunks: &Receiver<Result<Chunk, Error>>,
        recycle: &Sender<Vec<u8>>,
        groups: &SyncSender<ToEncoder>,
        back: &Receiver<Group>,
    ) -> Result<(), Error> {
        for chunk in chunks {
            let (buf, filled) = chunk?;
            self.bytes_json += filled as u64;
            let data = &buf[..filled];
            let mut start = 0;
            while let Some(nl) = memchr::memchr(b'\n', &data[start..]) {
                let end = start + nl;
                if self.pending.is_empty() {
                    self.line(&data[start..end], groups, back)?;
                } else {
                    let mut line = std::mem::take(&mut self.pending);
                    line.extend_from_slice(&data[start..end]);
                    self.line(&line, groups, back)?;
                    line.clear();
                    self.pending = line;
                }
                start = end + 1;
            }
            self.pending.extend_from_slice(&data[start..]);
            if self.pending.len() > self.options.max_line_bytes {
                return Err(Error::LineTooLong {
                    line: self.line_no + 1,
                    limit: self.options.max_line_bytes,
                });
            }
            let _ = recycle.send(buf);
        }
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.line(&line, groups, back)?;
        }
        if self.group.rows > 0 {
            self.flush(groups, back)?;
        }
        Ok(())
    }

    fn line(
        &mut self,
        line: &[u8],
        groups: &SyncSender<ToEncoder>,
        back: &Receiver<Group>,
    ) -> Result<(), Error> {
        self.line_no += 1;
        let line_no = self.line_no;
        if line.len() > self.options.max_line_bytes {
            return Err(Error::LineTooLong {
                line: line_no,
                limit: self.options.max_line_bytes,
            });
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(());
        }
        if std::str::from_utf8(line).is_err() {
            return Err(Error::Utf8 { line: line_no });
        }
        self.row_id += 1;
        let row_id = self.row_id;
        let syntax = |e: crate::scan::SyntaxError| Error::Syntax {
            line: line_no,
            reason: e.to_string(),
        };
        let mut sc = Scanner::new(line).map_err(syntax)?;
        self.late_buf.clear();
        let mut pos = 0usize;
        // Columns given a value in this row: when that is all of them (the usual case), no
        // column needs a null.
        let mut set = 0usize;
        while sc.begin_member().map_err(syntax)? {
            let expected = self.expect.get(pos).copied().unwrap_or(NO_COLUMN);
            let fast = expected != NO_COLUMN
                && self.patterns[expected as usize]
                    .as_deref()
                    .is_some_and(|p| sc.eat(p));
            let c = if fast {
                pos += 1;
                expected
            } else {
                let (key_raw, key_escaped) = sc.key().map_err(syntax)?;
                // The key buffer is moved out so the key can be borrowed across `&mut self`.
                let mut key_buf = std::mem::take(&mut self.key_buf);
                let key: &[u8] = if key_escaped {
                    key_buf.clear();
                    unescape(key_raw, &mut key_buf).map_err(|r| Error::Syntax {
                        line: line_no,
                        reason: format!("key: {r}"),
                    })?;
                    &key_buf
                } else {
                    key_raw
                };
                let col = self.lookup(pos, key);
                pos += 1;
                let col = match col {
                    Some(c) => Some(c),
                    None if !self.frozen && key != LATE_UNKNOWN_COLUMN.as_bytes() => {
                        if self.names.len() >= self.options.max_columns {
                            return Err(Error::TooManyColumns {
                                line: line_no,
                                limit: self.options.max_columns,
                            });
                        }
                        let name = String::from_utf8_lossy(key).into_owned();
                        debug!(column = %name, line = line_no, "unknown column");
                        let c = self.add_column(&name, ColumnType::String);
                        self.expect.truncate(pos - 1);
                        Some(c)
                    }
                    None => None,
                };
                let Some(c) = col else {
                    // Late unknown key: kept verbatim in the JSON column.
                    let (_, raw) = sc.value_raw().map_err(syntax)?;
                    let name = String::from_utf8_lossy(key);
                    if !self.late_names.iter().any(|n| *n == name) {
                        if self.names.len() + self.late_names.len() >= self.options.max_columns {
                            return Err(Error::TooManyColumns {
                                line: line_no,
                                limit: self.options.max_columns,
                            });
                        }
                        self.late_names.push(name.into_owned());
                    }
                    self.late_buf
                        .push(if self.late_buf.is_empty() { b'{' } else { b',' });
                    self.late_buf.push(b'"');
                    self.late_buf.extend_from_slice(key_raw);
                    self.late_buf.extend_from_slice(b"\":");
                    self.late_buf.extend_from_slice(raw);
                    self.key_buf = key_buf;
                    continue;
                };
                self.key_buf = key_buf;
                c
            };
            let (token, raw) = sc.value_raw().map_err(syntax)?;
            let ci = c as usize;
            if self.stamp[ci] == row_id {
                return Err(Error::DuplicateKey {
                    line: line_no,
                    key: String::from_utf8_lossy(&self.names[ci]).into_owned(),
                });
            }
            self.stamp[ci] = row_id;
            set += 1;
            self.put(ci, token, raw).map_err(|reason| Error::Value {
                line: line_no,
                column: String::from_utf8_lossy(&self.names[ci]).into_owned(),
                reason,
            })?;
        }
        if set < self.group.cols.len() {
            for (ci, col) in self.group.cols.iter_mut().enumerate() {
                if self.stamp[ci] != row_id {
                    col.push_null();
                }
            }
        }
        if self.late_buf.is_empty() {
            self.group.late.push_null();
        } else {
            self.late_buf.push(b'}');
            self.group.late.push_str(&self.late_buf);
        }
        self.account(row_id)?;
        self.group.rows += 1;
        self.rows += 1;
        self.group_bytes += line.len();
        if self.group.rows >= self.options.row_group_rows
            || self.group_bytes >= self.options.row_group_bytes
        {
            self.flush(groups, back)?;
        }
        Ok(())
    }

    #[inline]
    fn lookup(&mut self, pos: usize, key: &[u8]) -> Option<u32> {
        if let Some(&c) = self.expect.get(pos) {
            if c != NO_COLUMN && *self.names[c as usize] == *key {
                return Some(c);
            }
        }
        let c = self
            .exact
            .get(key)
            .or_else(|| self.lower.get(&key.to_ascii_lowercase()[..]))
            .copied();
        if pos < self.options.max_columns {
            if self.expect.len() <= pos {
                self.expect.resize(pos + 1, NO_COLUMN);
            }
            self.expect[pos] = c.unwrap_or(NO_COLUMN);
        }
        c
    }

    /// Appends one value to column `ci`; the error is the reason (the caller adds context).
    fn put(&mut self, ci: usize, token: Token<'_>, raw: &[u8]) -> Result<(), String> {
        let ty = self.types[ci];
        let col = &mut self.group.cols[ci];
        if token == Token::Null {
            col.push_null();
            return Ok(());
        }
        // Typed columns accept the JSON type and a string holding it ("12.5"); "" is null.
        let text: &[u8] = match (ty, token) {
            (ColumnType::String, _) => {
                match token {
                    Token::Str {
                        content,
                        escaped: true,
                    } => {
                        let Values::Str { bytes, ends } = &mut col.values else {
                            return Err("internal: not a string column".into());
                        };
                        let len = bytes.len();
                        if let Err(e) = unescape(content, bytes) {
                            bytes.truncate(len);
                            return Err(e.to_string());
                        }
                        ends.push(bytes.len() as u32);
                        col.defs.push(1);
                    }
                    Token::Str { content, .. } => col.push_str(content),
                    _ => col.push_str(raw),
                }
                return Ok(());
            }
            (_, Token::Str { content: b"", .. }) => {
                col.push_null();
                return Ok(());
            }
            (_, Token::Str { escaped: true, .. }) => {
                return Err(format!(
                    "expected a {}, found an escaped string",
                    ty.describe()
                ))
            }
            (_, Token::Str { content, .. }) => content,
            (ColumnType::Decimal | ColumnType::Integer, Token::Number(t)) => t,
            _ => {
                return Err(format!(
                    "expected a {}, found {}",
                    ty.describe(),
                    String::from_utf8_lossy(&raw[..raw.len().min(40)])
                ))
            }
        };
        let reason = |e: crate::value::ValueError| {
            format!(
                "{e}: {:?}",
                String::from_utf8_lossy(&text[..text.len().min(60)])
            )
        };
        match &mut col.values {
            Values::Dec(v) => {
                let d = Decimal::parse(text).map_err(reason)?;
                self.sums[ci] = self.sums[ci]
                    .checked_add(d.scaled())
                    .ok_or_else(|| "the column's sum overflows DECIMAL(38,18)".to_string())?;
                v.push(d.scaled());
            }
            Values::Int(v) => v.push(
                Decimal::parse(text)
                    .and_then(Decimal::to_integer)
                    .map_err(reason)?,
            ),
            Values::Date(v) => v.push(parse_date(text).map_err(reason)?),
            Values::Ts(v) => v.push(parse_timestamp(text).map_err(reason)?),
            Values::Str { .. } => return Err("internal: string column".into()),
        }
        col.defs.push(1);
        Ok(())
    }

    /// Adds the row's invoice amounts to its (customer, currency) total.
    fn account(&mut self, row_id: u64) -> Result<(), Error> {
        let (Some(cust), Some(ccy)) = (self.invoice.0, self.invoice.1) else {
            return Ok(());
        };
        fn last_str<'p>(p: &'p Parser<'_>, ci: usize, row_id: u64) -> &'p [u8] {
            let c = &p.group.cols[ci];
            if p.stamp[ci] == row_id && c.defs.last() == Some(&1) {
                match &c.values {
                    Values::Str { ends, .. } => c.str_at(ends.len() - 1),
                    _ => b"",
                }
            } else {
                b""
            }
        }
        let mut key = std::mem::take(&mut self.key_buf);
        key.clear();
        key.extend_from_slice(last_str(self, cust, row_id));
        key.push(0xFF);
        key.extend_from_slice(last_str(self, ccy, row_id));
        if let Some((prod, sku)) = self.product_cols {
            key.push(0xFF);
            key.extend_from_slice(last_str(self, prod, row_id));
            key.push(0xFF);
            key.extend_from_slice(last_str(self, sku, row_id));
        }
        let idx = match self.totals_index.get(&key[..]) {
            Some(&i) => i,
            None => {
                let text = |ci| String::from_utf8_lossy(last_str(self, ci, row_id)).into_owned();
                let i = self.totals.len();
                self.totals.push(Tally {
                    customer: text(cust),
                    currency: text(ccy),
                    product: self.product_cols.map(|(prod, sku)| ProductKey {
                        product_id: text(prod),
                        sku_id: text(sku),
                    }),
                    rows: 0,
                    amounts: vec![0; self.invoice.2.len()],
                });
                self.totals_index.insert(key.clone(), i);
                i
            }
        };
        self.key_buf = key;
        let t = &mut self.totals[idx];
        t.rows += 1;
        for (k, &ai) in self.invoice.2.iter().enumerate() {
            let c = &self.group.cols[ai];
            if self.stamp[ai] == row_id && c.defs.last() == Some(&1) {
                if let Values::Dec(v) = &c.values {
                    let last = *v.last().expect("a value was pushed");
                    t.amounts[k] = t.amounts[k].checked_add(last).ok_or_else(|| Error::Value {
                        line: self.line_no,
                        column: String::from_utf8_lossy(&self.names[ai]).into_owned(),
                        reason: "the customer total overflows DECIMAL(38,18)".into(),
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Hands the filled row group to the encoder and continues with an empty one.
    fn flush(
        &mut self,
        groups: &SyncSender<ToEncoder>,
        back: &Receiver<Group>,
    ) -> Result<(), Error> {
        self.open(groups)?;
        let mut next = self
            .spare
            .take()
            .or_else(|| back.try_recv().ok())
            .unwrap_or_else(|| Group {
                cols: self
                    .group
                    .cols
                    .iter()
                    .map(|c| {
                        let mut c = c.clone();
                        c.clear();
                        c
                    })
                    .collect(),
                late: ColBuf::new(ColumnType::String),
                rows: 0,
            });
        for c in next.cols.iter_mut() {
            c.clear();
        }
        next.late.clear();
        next.rows = 0;
        let full = std::mem::replace(&mut self.group, next);
        self.group_bytes = 0;
        groups
            .send(ToEncoder::Group(full))
            .map_err(|_| Error::Internal("encoder stopped"))
    }

    /// Fixes the column set (first flush, or the end of an input without rows).
    fn open(&mut self, groups: &SyncSender<ToEncoder>) -> Result<(), Error> {
        if !self.frozen {
            self.frozen = true;
            groups
                .send(ToEncoder::Open(self.unknown_names()))
                .map_err(|_| Error::Internal("encoder stopped"))?;
        }
        Ok(())
    }

    fn finish(&mut self, groups: &SyncSender<ToEncoder>) -> Result<(), ()> {
        self.open(groups).map_err(|_| ())?;
        groups.send(ToEncoder::Finish).map_err(|_| ())
    }

    fn into_report(
        self,
        bytes_in: u64,
        bytes_out_typed: u64,
        bytes_out_focus: u64,
        row_groups: u32,
    ) -> ConvertReport {
        let known = self.schema.columns().len();
        let mut unknown_columns: Vec<UnknownColumn> = self.names[known..]
            .iter()
            .map(|n| UnknownColumn {
                name: String::from_utf8_lossy(n).into_owned(),
                placement: UnknownPlacement::Column,
            })
            .collect();
        unknown_columns.extend(self.late_names.iter().map(|n| UnknownColumn {
            name: n.clone(),
            placement: UnknownPlacement::LateKeys,
        }));
        let sums = self
            .schema
            .columns()
            .iter()
            .zip(&self.sums)
            .filter(|(c, _)| c.ty == ColumnType::Decimal)
            .map(|(c, s)| ColumnSum {
                column: c.name,
                sum: Decimal::from_scaled(*s),
            })
            .collect();
        let amount_names: Vec<&'static str> = self
            .invoice
            .2
            .iter()
            .map(|&i| self.schema.columns()[i].name)
            .collect();
        let mut customer_totals: Vec<CustomerTotal> = self
            .totals
            .into_iter()
            .map(|t| CustomerTotal {
                customer: CustomerId(t.customer),
                currency: CurrencyCode(t.currency),
                product: t.product,
                rows: t.rows,
                amounts: amount_names
                    .iter()
                    .zip(t.amounts)
                    .map(|(n, s)| ColumnSum {
                        column: n,
                        sum: Decimal::from_scaled(s),
                    })
                    .collect(),
            })
            .collect();
        customer_totals.sort_by(|a, b| {
            (&a.customer, &a.currency, &a.product).cmp(&(&b.customer, &b.currency, &b.product))
        });
        ConvertReport {
            rows: self.rows,
            bytes_in,
            bytes_json: self.bytes_json,
            bytes_out_typed,
            bytes_out_focus,
            row_groups,
            unknown_columns,
            sums,
            customer_totals,
        }
    }
}
