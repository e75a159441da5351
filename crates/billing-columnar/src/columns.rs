//! Column buffers for one batch of rows, and writing them to Parquet with the low-level column
//! writer API (no arrow: a much smaller build, and values go straight from our buffers).
//!
//! A row group spans many batches: each column's writer stays open across them and keeps its
//! compressed pages in memory until the row group closes, so row groups can hold a hundred
//! thousand rows while only a batch of parsed values exists at a time.

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::{get_column_writer, ColumnWriter};
use parquet::data_type::{ByteArray, FixedLenByteArray};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{
    EnabledStatistics, WriterProperties, WriterPropertiesBuilder, WriterVersion,
};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnPath, Type};

use crate::schema::{ColumnType, DECIMAL_PRECISION, DECIMAL_SCALE};
use crate::Error;

/// The values of one column in a row group; nulls are only in `defs` (0 = null, 1 = value).
#[derive(Debug, Clone)]
pub(crate) enum Values {
    /// Concatenated UTF-8 bytes and the end offset of each value.
    Str {
        bytes: Vec<u8>,
        ends: Vec<u32>,
    },
    Dec(Vec<i128>),
    Int(Vec<i64>),
    Date(Vec<i32>),
    Ts(Vec<i64>),
}

#[derive(Debug, Clone)]
pub(crate) struct ColBuf {
    pub defs: Vec<i16>,
    pub values: Values,
}

impl ColBuf {
    pub fn new(ty: ColumnType) -> Self {
        let values = match ty {
            ColumnType::String => Values::Str {
                bytes: Vec::new(),
                ends: Vec::new(),
            },
            ColumnType::Decimal => Values::Dec(Vec::new()),
            ColumnType::Integer => Values::Int(Vec::new()),
            ColumnType::Date => Values::Date(Vec::new()),
            ColumnType::Timestamp => Values::Ts(Vec::new()),
        };
        Self {
            defs: Vec::new(),
            values,
        }
    }

    pub fn clear(&mut self) {
        self.defs.clear();
        match &mut self.values {
            Values::Str { bytes, ends } => {
                bytes.clear();
                ends.clear();
            }
            Values::Dec(v) => v.clear(),
            Values::Int(v) => v.clear(),
            Values::Date(v) => v.clear(),
            Values::Ts(v) => v.clear(),
        }
    }

    /// Makes this buffer a copy of `src` (same type), reusing its allocations.
    pub fn copy_from(&mut self, src: &ColBuf) {
        self.defs.clone_from(&src.defs);
        match (&mut self.values, &src.values) {
            (
                Values::Str { bytes, ends },
                Values::Str {
                    bytes: sb,
                    ends: se,
                },
            ) => {
                bytes.clone_from(sb);
                ends.clone_from(se);
            }
            (Values::Dec(v), Values::Dec(s)) => v.clone_from(s),
            (Values::Int(v), Values::Int(s)) | (Values::Ts(v), Values::Ts(s)) => v.clone_from(s),
            (Values::Date(v), Values::Date(s)) => v.clone_from(s),
            (values, s) => *values = s.clone(),
        }
    }

    #[inline]
    pub fn push_null(&mut self) {
        self.defs.push(0);
    }

    /// Appends a string value from pieces already written to the byte buffer by `fill`.
    #[inline]
    pub fn push_str_with(&mut self, fill: impl FnOnce(&mut Vec<u8>)) {
        if let Values::Str { bytes, ends } = &mut self.values {
            fill(bytes);
            ends.push(bytes.len() as u32);
            self.defs.push(1);
        }
    }

    #[inline]
    pub fn push_str(&mut self, s: &[u8]) {
        self.push_str_with(|b| b.extend_from_slice(s));
    }

    /// Whether a dictionary would not pay for this column: more than half of a sample spread
    /// over the whole batch distinct (UUID-like strings, amounts), where a dictionary costs a
    /// hash per value and holds every value again for no saving. A column whose sample is a
    /// single value keeps its dictionary: files clustered by customer or subscription make
    /// low-cardinality columns look constant over the first rows.
    pub fn dictionary_useless(&self) -> bool {
        use std::collections::HashSet;
        fn judge<T: std::hash::Hash + Eq>(n: usize, at: impl Fn(usize) -> T) -> bool {
            if n < MIN_VALUES_FOR_PLAIN {
                return false;
            }
            let stride = n.div_ceil(DICTIONARY_SAMPLE);
            let mut seen = HashSet::with_capacity(DICTIONARY_SAMPLE);
            let mut taken = 0usize;
            for i in (0..n).step_by(stride) {
                seen.insert(at(i));
                taken += 1;
            }
            seen.len() * 2 > taken
        }
        match &self.values {
            Values::Str { ends, .. } => judge(ends.len(), |i| self.str_at(i)),
            Values::Dec(v) => judge(v.len(), |i| v[i]),
            Values::Int(v) | Values::Ts(v) => judge(v.len(), |i| v[i]),
            Values::Date(v) => judge(v.len(), |i| v[i]),
        }
    }

    /// How many (non-null) values the buffer holds.
    pub fn values_len(&self) -> usize {
        match &self.values {
            Values::Str { ends, .. } => ends.len(),
            Values::Dec(v) => v.len(),
            Values::Int(v) | Values::Ts(v) => v.len(),
            Values::Date(v) => v.len(),
        }
    }

    /// Appends a copy of each row of `rows` (row indices, nulls kept): the Tax rows of the
    /// FOCUS view repeat their charge's values.
    pub fn repeat_rows(&mut self, rows: &[usize]) {
        let mut index = Vec::with_capacity(self.defs.len());
        let mut k = 0;
        for &d in &self.defs {
            index.push((d == 1).then(|| {
                k += 1;
                k - 1
            }));
        }
        for &r in rows {
            let Some(i) = index[r] else {
                self.defs.push(0);
                continue;
            };
            match &mut self.values {
                Values::Str { bytes, ends } => {
                    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
                    bytes.extend_from_within(start..ends[i] as usize);
                    ends.push(bytes.len() as u32);
                }
                Values::Dec(v) => v.push(v[i]),
                Values::Int(v) | Values::Ts(v) => v.push(v[i]),
                Values::Date(v) => v.push(v[i]),
            }
            self.defs.push(1);
        }
    }

    /// Removes the first `n` rows.
    pub fn drop_front(&mut self, n: usize) {
        let n = n.min(self.defs.len());
        let values = self.defs[..n].iter().filter(|&&d| d == 1).count();
        self.defs.drain(..n);
        match &mut self.values {
            Values::Str { bytes, ends } => {
                let cut = if values == 0 { 0 } else { ends[values - 1] };
                bytes.drain(..cut as usize);
                ends.drain(..values);
                ends.iter_mut().for_each(|e| *e -= cut);
            }
            Values::Dec(v) => drop(v.drain(..values)),
            Values::Int(v) | Values::Ts(v) => drop(v.drain(..values)),
            Values::Date(v) => drop(v.drain(..values)),
        }
    }

    /// The string at `value_index` (the position among non-null values) of a string column.
    pub fn str_at(&self, value_index: usize) -> &[u8] {
        match &self.values {
            Values::Str { bytes, ends } => {
                let start = if value_index == 0 {
                    0
                } else {
                    ends[value_index - 1] as usize
                };
                &bytes[start..ends[value_index] as usize]
            }
            _ => &[],
        }
    }
}

/// Below this many values in a row group's first batch a column keeps its dictionary.
const MIN_VALUES_FOR_PLAIN: usize = 64;
/// How many values, spread evenly over a row group's first batch, decide whether a column
/// keeps its dictionary in that row group.
const DICTIONARY_SAMPLE: usize = 4096;

/// The Parquet field of a column.
fn field(name: &str, ty: ColumnType) -> Result<Type, Error> {
    let b = match ty {
        ColumnType::String => Type::primitive_type_builder(name, Physical::BYTE_ARRAY)
            .with_logical_type(Some(LogicalType::String)),
        ColumnType::Decimal => Type::primitive_type_builder(name, Physical::FIXED_LEN_BYTE_ARRAY)
            .with_length(16)
            .with_logical_type(Some(LogicalType::decimal(
                DECIMAL_SCALE as i32,
                DECIMAL_PRECISION as i32,
            )))
            .with_precision(DECIMAL_PRECISION as i32)
            .with_scale(DECIMAL_SCALE as i32),
        ColumnType::Integer => Type::primitive_type_builder(name, Physical::INT64),
        ColumnType::Date => Type::primitive_type_builder(name, Physical::INT32)
            .with_logical_type(Some(LogicalType::Date)),
        ColumnType::Timestamp => Type::primitive_type_builder(name, Physical::INT64)
            .with_logical_type(Some(LogicalType::timestamp(true, TimeUnit::MICROS))),
    };
    Ok(b.with_repetition(Repetition::OPTIONAL).build()?)
}

/// Longest string kept as a min or max statistic; longer bounds are left out (a truncated
/// maximum would need rounding up, and such columns, URIs and JSON text, are not filtered on).
const MAX_STAT_BYTES: usize = 64;

/// DuckDB reads 2,048 rows at a time and keeps a dictionary column's values as a dictionary
/// vector only when a vector does not straddle two pages (measured: grouping on such a column
/// was 2-4 times slower on pages of unaligned sizes).
const VECTOR_ROWS: usize = 2048;

/// Target size of a data page before compression.
fn page_bytes() -> usize {
    std::env::var("BILLING_COLUMNAR_PAGE_KIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(PAGE_BYTES, |k| k << 10)
}

const PAGE_BYTES: usize = 128 << 10;

/// The compressed pages of one column chunk, kept until its row group is written: pieces of
/// exactly the size written (a growing vector would hold up to twice the bytes).
#[derive(Clone, Default)]
struct Pages(Arc<Mutex<(Vec<Vec<u8>>, usize)>>);

impl Write for Pages {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut p = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("page buffer poisoned"))?;
        p.0.push(buf.to_vec());
        p.1 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Pages {
    /// The chunk's bytes, in one buffer.
    fn take(&self) -> Vec<u8> {
        let Ok(mut p) = self.0.lock() else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(p.1);
        for piece in p.0.drain(..) {
            out.extend_from_slice(&piece);
        }
        p.1 = 0;
        out
    }

    fn len(&self) -> usize {
        self.0.lock().map(|p| p.1).unwrap_or(0)
    }
}

/// One zstd context shared by a file's column writers.
type Zstd = Arc<Mutex<zstd::bulk::Compressor<'static>>>;

/// Compresses pages with the file's zstd context and writes them (headers and data, as in the
/// file) into [`Pages`]; offsets are from the start of the chunk, which `append_column`
/// expects. The column writers themselves are set to UNCOMPRESSED: each would otherwise hold
/// its own zstd contexts, and a row group has every column open at once (measured: a third of
/// the peak memory).
struct MemPageWriter {
    sink: TrackedWrite<Pages>,
    zstd: Zstd,
}

impl PageWriter for MemPageWriter {
    fn write_page(&mut self, page: CompressedPage) -> parquet::errors::Result<PageWriteSpec> {
        let uncompressed = page.uncompressed_size();
        let mut raw = page.compressed_page().clone();
        let buf = match &mut raw {
            Page::DataPage { buf, .. } | Page::DictionaryPage { buf, .. } => buf,
            Page::DataPageV2 { .. } => {
                return Err(parquet::errors::ParquetError::General(
                    "v2 data pages are not written".into(),
                ))
            }
        };
        let compressed = self
            .zstd
            .lock()
            .map_err(|_| parquet::errors::ParquetError::General("zstd poisoned".into()))?
            .compress(buf)?;
        *buf = Bytes::from(compressed);
        SerializedPageWriter::new(&mut self.sink).write_page(CompressedPage::new(raw, uncompressed))
    }

    fn close(&mut self) -> parquet::errors::Result<()> {
        self.sink.flush()?;
        Ok(())
    }
}

/// Running min/max of a string or decimal column over a row group (owned: the values given
/// to the column writers are borrowed, see `borrowed`).
#[derive(Default)]
enum Bounds {
    #[default]
    Empty,
    Str(Vec<u8>, Vec<u8>),
    Dec(i128, i128),
}

impl Bounds {
    fn add_str(&mut self, v: &[u8]) {
        match self {
            Bounds::Str(min, max) => {
                if v < min.as_slice() {
                    min.clear();
                    min.extend_from_slice(v);
                }
                if v > max.as_slice() {
                    max.clear();
                    max.extend_from_slice(v);
                }
            }
            _ => *self = Bounds::Str(v.to_vec(), v.to_vec()),
        }
    }

    fn add_dec(&mut self, v: i128) {
        match self {
            Bounds::Dec(min, max) => {
                *min = (*min).min(v);
                *max = (*max).max(v);
            }
            _ => *self = Bounds::Dec(v, v),
        }
    }

    fn statistics(&self, nulls: u64) -> Statistics {
        match self {
            Bounds::Str(min, max) if min.len() <= MAX_STAT_BYTES && max.len() <= MAX_STAT_BYTES => {
                Statistics::new(
                    Some(ByteArray::from(min.clone())),
                    Some(ByteArray::from(max.clone())),
                    None,
                    Some(nulls),
                    false,
                )
            }
            Bounds::Dec(min, max) => Statistics::new(
                Some(FixedLenByteArray::from(min.to_be_bytes().to_vec())),
                Some(FixedLenByteArray::from(max.to_be_bytes().to_vec())),
                None,
                Some(nulls),
                false,
            ),
            Bounds::Str(..) => Statistics::new::<ByteArray>(None, None, None, Some(nulls), false),
            Bounds::Empty => Statistics::new::<ByteArray>(None, None, None, Some(nulls), false),
        }
    }
}

/// One column of the row group being written.
struct OpenColumn {
    /// Declared before `arena`: dropped first, so no view into the arena outlives it.
    writer: ColumnWriter<'static>,
    pages: Pages,
    /// The distinct values given to a dictionary column's writer (whose dictionary keeps them
    /// until the row group closes); `None` without a dictionary.
    arena: Option<Arena>,
    /// Our own min/max (strings and decimals); `None` where the writer keeps statistics.
    bounds: Option<Bounds>,
    nulls: u64,
}

/// One Parquet file being written, a batch at a time; row groups close at `group_rows` rows
/// or when their compressed pages reach `group_bytes`.
pub(crate) struct Sink<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    base: WriterPropertiesBuilder,
    codec: Compression,
    zstd: Zstd,
    names: Vec<String>,
    types: Vec<ColumnType>,
    open: Vec<OpenColumn>,
    open_rows: usize,
    group_rows: usize,
    group_bytes: usize,
    groups: u32,
    scratch: Vec<ByteArray>,
    flba: Vec<FixedLenByteArray>,
    /// Big-endian decimal bytes of the column being written.
    raw: Vec<u8>,
}

impl<W: Write + Send> Sink<W> {
    pub fn new(
        out: W,
        columns: &[(String, ColumnType)],
        metadata: Vec<(String, String)>,
        zstd_level: i32,
        (group_rows, group_bytes): (usize, usize),
    ) -> Result<Self, Error> {
        let fields = columns
            .iter()
            .map(|(n, t)| field(n, *t).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let schema = Type::group_type_builder("schema")
            .with_fields(fields)
            .build()?;
        let codec = Compression::ZSTD(ZstdLevel::try_new(zstd_level)?);
        let mut base = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            // Pages are compressed by `MemPageWriter`; the chunk metadata names the codec.
            .set_compression(Compression::UNCOMPRESSED)
            // A dictionary column buffers 8 bytes per value until its page closes: pages of
            // at most 8,192 rows bound that for every open column.
            .set_data_page_row_count_limit(4 * VECTOR_ROWS)
            // Chunk min/max let readers skip row groups. Strings and decimals get ours (see
            // `Bounds`): the writer's would keep borrowed values beyond the batch.
            .set_statistics_enabled(EnabledStatistics::Chunk)
            // Every column of a row group is open at once, each filling a page: small pages
            // keep that memory bounded (columns × page size).
            .set_data_page_size_limit(page_bytes())
            .set_created_by(format!("billing-columnar {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(
                metadata
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v))
                    .collect(),
            ));
        for (name, ty) in columns {
            if matches!(ty, ColumnType::String | ColumnType::Decimal) {
                base = base.set_column_statistics_enabled(
                    ColumnPath::from(name.as_str()),
                    EnabledStatistics::None,
                );
            }
        }
        let props = base.clone().build();
        Ok(Self {
            writer: SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props))?,
            base,
            codec,
            zstd: Arc::new(Mutex::new(
                zstd::bulk::Compressor::new(zstd_level).map_err(Error::Write)?,
            )),
            names: columns.iter().map(|c| c.0.clone()).collect(),
            types: columns.iter().map(|c| c.1).collect(),
            open: Vec::new(),
            open_rows: 0,
            group_rows: group_rows.max(1),
            group_bytes,
            groups: 0,
            scratch: Vec::new(),
            flba: Vec::new(),
            raw: Vec::new(),
        })
    }

    /// Opens a row group: each column's dictionary is decided on this first batch.
    fn open_group(&mut self, cols: &[&ColBuf]) -> Result<(), Error> {
        let mut props = self.base.clone();
        let dictionary: Vec<bool> = cols.iter().map(|c| !c.dictionary_useless()).collect();
        for (name, &dict) in self.names.iter().zip(&dictionary) {
            if !dict {
                // Nearly unique columns: plain encoding. The dictionary's hashing was the
                // encoder's largest cost.
                props = props.set_column_dictionary_enabled(ColumnPath::from(name.as_str()), false);
            }
        }
        let props = Arc::new(props.build());
        let descr = self.writer.schema_descr();
        self.open = (0..self.types.len())
            .map(|i| {
                let pages = Pages::default();
                let page_writer = MemPageWriter {
                    sink: TrackedWrite::new(pages.clone()),
                    zstd: self.zstd.clone(),
                };
                OpenColumn {
                    writer: get_column_writer(
                        descr.column(i),
                        props.clone(),
                        Box::new(page_writer),
                    ),
                    pages,
                    arena: dictionary[i].then(Arena::default),
                    bounds: matches!(self.types[i], ColumnType::String | ColumnType::Decimal)
                        .then(Bounds::default),
                    nulls: 0,
                }
            })
            .collect();
        Ok(())
    }

    /// Writes one batch; `cols` are in schema order and all have the same row count. A row
    /// group closes after exactly `group_rows` rows (a batch may straddle two), or earlier at
    /// its byte bound.
    pub fn write_batch(&mut self, cols: &[&ColBuf]) -> Result<(), Error> {
        debug_assert_eq!(cols.len(), self.types.len());
        let n = cols.first().map_or(0, |c| c.defs.len());
        let mut start = 0;
        while start < n {
            if self.open.is_empty() {
                self.open_group(cols)?;
            }
            // Calls never cross a multiple of VECTOR_ROWS, so dictionary pages (closed by the
            // row limit, a multiple of it) hold whole reader vectors.
            let end = n
                .min(start + (self.group_rows - self.open_rows))
                .min(start + (VECTOR_ROWS - self.open_rows % VECTOR_ROWS));
            self.write_rows(cols, start, end)?;
            self.open_rows += end - start;
            start = end;
            if self.open_rows >= self.group_rows || self.buffered() >= self.group_bytes {
                self.close_group()?;
            }
        }
        Ok(())
    }

    /// Writes rows `start..end` of a batch to the open row group.
    fn write_rows(&mut self, cols: &[&ColBuf], start: usize, end: usize) -> Result<(), Error> {
        for (col, oc) in cols.iter().zip(self.open.iter_mut()) {
            let all_rows = start == 0 && end == col.defs.len();
            let defs = &col.defs[start..end];
            let count = |d: &[i16]| d.iter().filter(|&&d| d == 1).count();
            // The batch's values (non-null only) of these rows.
            let (v0, v1) = if all_rows {
                (0, col.values_len())
            } else {
                let v0 = count(&col.defs[..start]);
                (v0, v0 + count(defs))
            };
            oc.nulls += (defs.len() - (v1 - v0)) as u64;
            let defs = Some(defs);
            match (&mut oc.writer, &col.values) {
                (ColumnWriter::ByteArrayColumnWriter(w), Values::Str { bytes, ends }) => {
                    let via_arena = oc.arena.as_ref().is_some_and(Arena::active);
                    if let Some(b) = oc.bounds.as_mut().filter(|_| !via_arena) {
                        for i in v0..v1 {
                            b.add_str(col.str_at(i));
                        }
                    }
                    self.scratch.clear();
                    let mut from = if v0 == 0 { 0 } else { ends[v0 - 1] as usize };
                    if let Some(arena) = oc.arena.as_mut().filter(|a| a.active()) {
                        // The dictionary keeps its distinct values until the row group
                        // closes: they are given as views of the arena, which lives as long.
                        // Bounds only change with a value not seen before in the row group.
                        for &to in &ends[v0..v1] {
                            let to = to as usize;
                            let (v, new) = arena.intern(&bytes[from..to]);
                            if new {
                                if let Some(b) = oc.bounds.as_mut() {
                                    b.add_str(v);
                                }
                            }
                            self.scratch.push(ByteArray::from(Bytes::from_static(v)));
                            from = to;
                        }
                    } else {
                        // SAFETY: see `borrowed`; the views die with this call.
                        let all = unsafe { borrowed(bytes) };
                        for &to in &ends[v0..v1] {
                            let to = to as usize;
                            self.scratch
                                .push(ByteArray::from(Bytes::from_static(&all[from..to])));
                            from = to;
                        }
                    }
                    // Cleared before `?` too: no view outlives this call, even on an error.
                    let written = w.write_batch(&self.scratch, defs, None);
                    self.scratch.clear();
                    written?;
                }
                (ColumnWriter::FixedLenByteArrayColumnWriter(w), Values::Dec(v)) => {
                    let v = &v[v0..v1];
                    self.raw.clear();
                    // Decimal bounds are cheap: every value, arena or not.
                    for &x in v {
                        if let Some(b) = oc.bounds.as_mut() {
                            b.add_dec(x);
                        }
                        self.raw.extend_from_slice(&x.to_be_bytes());
                    }
                    self.flba.clear();
                    if let Some(arena) = oc.arena.as_mut().filter(|a| a.active()) {
                        for k in 0..v.len() {
                            let (v, _) = arena.intern(&self.raw[k * 16..k * 16 + 16]);
                            self.flba.push(FixedLenByteArray::from(ByteArray::from(
                                Bytes::from_static(v),
                            )));
                        }
                    } else {
                        // SAFETY: as above; `raw` is not touched again before this returns.
                        let all = unsafe { borrowed(&self.raw) };
                        for k in 0..v.len() {
                            self.flba.push(FixedLenByteArray::from(ByteArray::from(
                                Bytes::from_static(&all[k * 16..k * 16 + 16]),
                            )));
                        }
                    }
                    let written = w.write_batch(&self.flba, defs, None);
                    self.flba.clear();
                    written?;
                }
                (ColumnWriter::Int64ColumnWriter(w), Values::Int(v) | Values::Ts(v)) => {
                    w.write_batch(&v[v0..v1], defs, None)?;
                }
                (ColumnWriter::Int32ColumnWriter(w), Values::Date(v)) => {
                    w.write_batch(&v[v0..v1], defs, None)?;
                }
                _ => return Err(Error::Internal("column buffer does not match its type")),
            }
        }
        Ok(())
    }

    /// Compressed bytes held for the open row group.
    fn buffered(&self) -> usize {
        self.open.iter().map(|c| c.pages.len()).sum()
    }

    /// Writes the open row group (if any) to the file.
    fn close_group(&mut self) -> Result<(), Error> {
        if self.open.is_empty() {
            return Ok(());
        }
        let mut rg = self.writer.next_row_group()?;
        for oc in self.open.drain(..) {
            let mut close = oc.writer.close()?;
            let mut md = close.metadata.into_builder().set_compression(self.codec);
            if let Some(b) = &oc.bounds {
                md = md.set_statistics(b.statistics(oc.nulls));
            }
            close.metadata = md.build()?;
            let data = Bytes::from(oc.pages.take());
            rg.append_column(&data, close)?;
        }
        rg.close()?;
        self.open_rows = 0;
        self.groups += 1;
        Ok(())
    }

    /// Writes the last row group and the footer; returns the output and the row groups.
    pub fn finish(mut self) -> Result<(W, u32), Error> {
        self.close_group()?;
        let groups = self.groups;
        let mut out = self.writer.into_inner()?;
        // A buffered output would otherwise flush on drop and lose the error.
        out.flush().map_err(Error::Write)?;
        Ok((out, groups))
    }
}

/// Distinct values of a dictionary column in the open row group, in chunks that never move, so
/// views of them stay valid until the arena is dropped (after the column's writer).
///
/// Once the arena holds [`ARENA_LIMIT`] bytes it stops taking values and the column's values
/// are borrowed like a plain column's: the writer's dictionary holds the same distinct values
/// (a few bytes more each), so it has passed its own 1 MiB limit long before and fallen back
/// to plain encoding, which keeps no value.
#[derive(Default)]
struct Arena {
    chunks: Vec<Vec<u8>>,
    seen: std::collections::HashMap<&'static [u8], (), std::hash::BuildHasherDefault<FxHasher>>,
    bytes: usize,
}

/// Bytes of distinct values after which an arena stops taking values (see [`Arena`]).
const ARENA_LIMIT: usize = 4 << 20;
const ARENA_CHUNK: usize = 64 << 10;

impl Arena {
    fn active(&self) -> bool {
        self.bytes < ARENA_LIMIT
    }

    /// The arena's copy of `v`, and whether it is new.
    fn intern(&mut self, v: &[u8]) -> (&'static [u8], bool) {
        if let Some((&k, _)) = self.seen.get_key_value(v) {
            return (k, false);
        }
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= v.len());
        if !fits {
            self.chunks
                .push(Vec::with_capacity(ARENA_CHUNK.max(v.len())));
        }
        let chunk = self.chunks.last_mut().expect("a chunk was pushed");
        let start = chunk.len();
        // Within capacity: the chunk's buffer does not move.
        chunk.extend_from_slice(v);
        // SAFETY: the bytes stay in place and unchanged until the arena is dropped; the
        // views go only to this column's writer and `seen`, both gone before that.
        let view = unsafe { borrowed(&chunk[start..]) };
        self.bytes += v.len();
        self.seen.insert(view, ());
        (view, true)
    }
}

/// A small fast hash (FxHash's) for the arenas: their keys are short strings and 16-byte
/// decimals, hashed once per value of a dictionary column.
#[derive(Default)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `bytes` with a lifetime that lets its pieces become `Bytes` whose clones and drops touch
/// no reference count (`Bytes::from_static`).
///
/// # Safety
///
/// Every clone must be gone before `bytes` is changed or freed. `write_rows` guarantees this:
/// it borrows batch buffers only for columns whose writer keeps no value beyond the call (no
/// dictionary, no statistics: the plain encoder copies the bytes into its page) and clears
/// its views before returning; a dictionary column's values are views of its [`Arena`],
/// dropped after the column's writer.
unsafe fn borrowed(bytes: &[u8]) -> &'static [u8] {
    // SAFETY: the caller keeps `bytes` alive and unchanged for as long as any view exists.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) }
}
