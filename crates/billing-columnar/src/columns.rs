//! Column buffers for one batch of rows, and writing them to Parquet: each column chunk is
//! encoded by [`crate::chunk`] and the parquet crate's file writer lays out row groups and
//! the footer (no arrow: a much smaller build, and values go straight from our buffers).
//!
//! A row group spans many batches: each column's chunk stays open across them and keeps its
//! compressed pages in memory until the row group closes, so row groups can hold tens of
//! thousands of rows while only a batch of parsed values exists at a time.

use std::io::Write;
use std::sync::{Arc, Mutex};

use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnDescPtr, Type};

use crate::chunk::{Chunk, Finished, Zstd};
use crate::dictionary_choice;
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
    // Always inline: called out of line from the parser's string fast path, it cost 0.8% of
    // the parser's instructions (callgrind).
    #[inline(always)]
    pub fn push_str_with(&mut self, fill: impl FnOnce(&mut Vec<u8>)) {
        if let Values::Str { bytes, ends } = &mut self.values {
            fill(bytes);
            ends.push(bytes.len() as u32);
            self.defs.push(1);
        }
    }

    /// [`Self::push_str_with`] for a `fill` that may decline (answering `false`, after which
    /// the byte buffer must be as it was): whether a value was appended.
    #[inline(always)]
    pub fn try_push_str_with(&mut self, fill: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        if let Values::Str { bytes, ends } = &mut self.values {
            if fill(bytes) {
                ends.push(bytes.len() as u32);
                self.defs.push(1);
                return true;
            }
        }
        false
    }

    /// Appends `n` nulls.
    pub fn push_nulls(&mut self, n: usize) {
        self.defs.resize(self.defs.len() + n, 0);
    }

    /// Appends `n` copies of string `s` (a FOCUS constant, a batch at a time): the bytes
    /// doubled a few times instead of `n` copies of a few bytes each.
    pub fn push_str_n(&mut self, s: &[u8], n: usize) {
        if let Values::Str { bytes, ends } = &mut self.values {
            let (start, end) = (bytes.len(), bytes.len() + s.len() * n);
            bytes.reserve(end - start);
            bytes.extend_from_slice(s);
            while bytes.len() < end && !s.is_empty() {
                let have = bytes.len() - start;
                bytes.extend_from_within(start..start + have.min(end - bytes.len()));
            }
            bytes.truncate(end);
            ends.extend((1..=n).map(|k| (start + k * s.len()) as u32));
            self.defs.resize(self.defs.len() + n, 1);
        }
    }

    #[inline]
    pub fn push_str(&mut self, s: &[u8]) {
        self.push_str_with(|b| b.extend_from_slice(s));
    }

    /// Appends string `s`, which is the start of `ahead`: a short string is copied as one
    /// fixed-size word read from `ahead` and then cut to length, which the compiler inlines,
    /// where a call to `memcpy` cost more than the copy (profiled: 8% of parsing).
    #[inline(always)]
    pub fn push_str_ahead(&mut self, s: &[u8], ahead: &[u8]) {
        debug_assert!(ahead.starts_with(s));
        fn word<const N: usize>(bytes: &mut Vec<u8>, n: usize, ahead: &[u8]) {
            let w: [u8; N] = ahead[..N].try_into().expect("N bytes");
            bytes.extend_from_slice(&w);
            bytes.truncate(bytes.len() - N + n);
        }
        self.push_str_with(|bytes| match s.len() {
            n @ 0..=16 if ahead.len() >= 16 => word::<16>(bytes, n, ahead),
            n @ 17..=32 if ahead.len() >= 32 => word::<32>(bytes, n, ahead),
            _ => bytes.extend_from_slice(s),
        });
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

    /// Appends a copy of the last row (null or value); nothing when empty.
    pub fn repeat_last(&mut self) {
        match self.defs.last() {
            None => return,
            Some(0) => {
                self.defs.push(0);
                return;
            }
            Some(_) => {}
        }
        match &mut self.values {
            Values::Str { bytes, ends } => {
                let n = ends.len();
                let start = if n < 2 { 0 } else { ends[n - 2] as usize };
                bytes.extend_from_within(start..ends[n - 1] as usize);
                ends.push(bytes.len() as u32);
            }
            Values::Dec(v) => v.push(v[v.len() - 1]),
            Values::Int(v) | Values::Ts(v) => v.push(v[v.len() - 1]),
            Values::Date(v) => v.push(v[v.len() - 1]),
        }
        self.defs.push(1);
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

    /// Whether a string column holds an empty string.
    pub fn has_empty_str(&self) -> bool {
        match &self.values {
            Values::Str { ends, .. } => {
                ends.first() == Some(&0) || ends.windows(2).any(|w| w[0] == w[1])
            }
            _ => false,
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

/// Target size of a data page of variable-width values before compression.
fn page_bytes() -> usize {
    std::env::var("BILLING_COLUMNAR_PAGE_KIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(PAGE_BYTES, |k| k << 10)
}

/// Every column of a row group is open at once, each filling a page: small pages keep that
/// memory bounded (columns × page size).
const PAGE_BYTES: usize = 128 << 10;

/// One Parquet file being written, a batch at a time; row groups close at `group_rows` rows
/// or when their compressed pages reach `group_bytes`.
///
/// With both views of a dataset whose FOCUS rows are its typed rows, the two files' row
/// groups are aligned ([`Sink::set_aligned`]) and a FOCUS column that repeats a typed column
/// takes the typed chunk as it is: a row group is sealed at `group_rows` inside a batch, or at
/// the byte bound between batches, and the encoder writes the sealed groups of both files
/// once both threads are done (convert/encode.rs).
pub(crate) struct Sink<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    descrs: Vec<ColumnDescPtr>,
    codec: Compression,
    zstd: Zstd,
    open: Vec<Chunk>,
    open_rows: usize,
    group_rows: usize,
    group_bytes: usize,
    page_bytes: usize,
    groups: u32,
    aligned: bool,
    /// Columns this file takes from the other file's chunks in the open row group: they are
    /// not encoded here.
    shared: Vec<bool>,
    /// Row groups sealed and not yet written, with their shared columns.
    sealed: Vec<Sealed>,
}

/// A row group sealed by an aligned sink: its finished chunks, `None` where a column is
/// shared (the other file's chunk is written there).
pub(crate) struct Sealed {
    chunks: Vec<Option<Finished>>,
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
        // Column chunks are encoded by `Chunk` and appended whole: the file writer only lays
        // out row groups and the footer.
        let props = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_created_by(format!("billing-columnar {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(
                metadata
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v))
                    .collect(),
            ))
            .build();
        let writer = SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props))?;
        let descr = writer.schema_descr();
        let descrs: Vec<ColumnDescPtr> =
            (0..descr.num_columns()).map(|i| descr.column(i)).collect();
        Ok(Self {
            shared: vec![false; descrs.len()],
            descrs,
            codec,
            zstd: Arc::new(Mutex::new(
                zstd::bulk::Compressor::new(zstd_level).map_err(Error::Write)?,
            )),
            writer,
            open: Vec::new(),
            open_rows: 0,
            group_rows: group_rows.max(1),
            group_bytes,
            page_bytes: page_bytes(),
            groups: 0,
            aligned: false,
            sealed: Vec::new(),
        })
    }

    /// Aligned mode: row groups are sealed at `group_rows` and the byte bound is left to the
    /// caller, who writes sealed groups with [`Sink::write_sealed`].
    pub fn set_aligned(&mut self) {
        self.aligned = true;
    }

    /// Which columns the open row group takes from the other file (from the next batch on).
    pub fn set_shared(&mut self, shared: &[bool]) {
        self.shared.copy_from_slice(shared);
    }

    /// Rows in the open row group.
    pub fn open_rows(&self) -> usize {
        self.open_rows
    }

    /// The open row group's chunk of column `i`.
    pub fn chunk(&self, i: usize) -> Option<&Chunk> {
        self.open.get(i)
    }

    /// Column `i` of the open row group stops being shared: it continues from `chunk`, a copy
    /// of the other file's chunk, which held the same values so far.
    pub fn adopt(&mut self, i: usize, chunk: Chunk) {
        if let Some(slot) = self.open.get_mut(i) {
            *slot = chunk;
        }
        self.shared[i] = false;
    }

    /// Opens a row group: each column's dictionary is decided on this first batch.
    fn open_group(&mut self, cols: &[&ColBuf]) {
        // Nearly unique columns go PLAIN: a dictionary would cost a hash per value for no
        // saving. Fixed-width values close pages by rows only: 32,768 decimals are 512 KiB.
        self.open = cols
            .iter()
            .zip(&self.shared)
            .map(|(c, &shared)| {
                let bytes = match c.values {
                    Values::Str { .. } => self.page_bytes,
                    _ => usize::MAX,
                };
                Chunk::new(
                    !shared && !dictionary_choice::useless(c, self.group_rows),
                    bytes,
                )
            })
            .collect();
    }

    /// Writes one batch; `cols` are in schema order and all have the same row count (shared
    /// columns are left empty). A row group closes after exactly `group_rows` rows (a batch
    /// may straddle two), or earlier at its byte bound.
    pub fn write_batch(&mut self, cols: &[&ColBuf]) -> Result<(), Error> {
        if cols.len() != self.descrs.len() {
            return Err(Error::Internal("batch does not match the file's columns"));
        }
        let n = cols
            .iter()
            .zip(&self.shared)
            .find(|(_, &shared)| !shared)
            .map_or(0, |(c, _)| c.defs.len());
        let mut start = 0;
        while start < n {
            if self.open.is_empty() {
                self.open_group(cols);
            }
            let end = n.min(start + (self.group_rows - self.open_rows));
            for ((col, chunk), &shared) in cols.iter().zip(self.open.iter_mut()).zip(&self.shared) {
                if shared {
                    continue;
                }
                let all_rows = start == 0 && end == col.defs.len();
                // The first value (non-null) of these rows.
                let v0 = if all_rows {
                    0
                } else {
                    col.defs[..start].iter().filter(|&&d| d == 1).count()
                };
                chunk.write(col, start, end, v0, &self.zstd)?;
            }
            self.open_rows += end - start;
            start = end;
            if self.aligned {
                if self.open_rows >= self.group_rows {
                    self.seal()?;
                }
            } else if self.open_rows >= self.group_rows || self.buffered() >= self.group_bytes {
                self.seal()?;
                for sealed in std::mem::take(&mut self.sealed) {
                    self.write_sealed(sealed, |_| None)?;
                }
            }
        }
        Ok(())
    }

    /// Compressed bytes held for the open row group.
    pub fn buffered(&self) -> usize {
        self.open.iter().map(Chunk::buffered).sum()
    }

    /// Ends the open row group (if any); it waits in [`Sink::take_sealed`]. Its chunks are
    /// finished (last pages and dictionary compressed) here, on the thread that encoded them:
    /// finished later on the thread writing the file, the two views' chunks were compressed one
    /// after the other while the parser waited and a core idled (measured: ~20 ms a row group).
    pub fn seal(&mut self) -> Result<(), Error> {
        if !self.open.is_empty() {
            let chunks = std::mem::take(&mut self.open)
                .into_iter()
                .zip(&self.shared)
                .map(|(chunk, &shared)| (!shared).then(|| chunk.finish(&self.zstd)).transpose())
                .collect::<Result<_, _>>()?;
            self.sealed.push(Sealed { chunks });
        }
        self.open_rows = 0;
        Ok(())
    }

    /// The sealed row groups, oldest first.
    pub fn take_sealed(&mut self) -> Vec<Sealed> {
        std::mem::take(&mut self.sealed)
    }

    /// Writes a sealed row group; a shared column's chunk comes from `import` (the other
    /// file's chunk of the same rows). Returns every chunk written, for the other file.
    pub fn write_sealed(
        &mut self,
        sealed: Sealed,
        import: impl Fn(usize) -> Option<Finished>,
    ) -> Result<Vec<Finished>, Error> {
        let mut rg = self.writer.next_row_group()?;
        let mut written = Vec::with_capacity(sealed.chunks.len());
        for (i, chunk) in sealed.chunks.into_iter().enumerate() {
            let finished = match chunk {
                Some(finished) => finished,
                None => import(i).ok_or(Error::Internal("a shared column has no chunk to take"))?,
            };
            rg.append_column(
                &finished.bytes,
                finished.result(self.descrs[i].clone(), self.codec)?,
            )?;
            written.push(finished);
        }
        rg.close()?;
        self.groups += 1;
        Ok(written)
    }

    /// Writes the last row group and the footer; returns the output and the row groups.
    pub fn finish(mut self) -> Result<(W, u32), Error> {
        self.seal()?;
        for sealed in self.take_sealed() {
            self.write_sealed(sealed, |_| None)?;
        }
        let groups = self.groups;
        let mut out = self.writer.into_inner()?;
        // A buffered output would otherwise flush on drop and lose the error.
        out.flush().map_err(Error::Write)?;
        Ok((out, groups))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::statistics::Statistics;
    use parquet::record::Field;

    #[test]
    fn copies_at_once_are_the_copies_one_by_one() {
        for s in [
            &b""[..],
            b"x",
            b"Standard",
            b"Microsoft Partner Center billing export",
        ] {
            for n in [0, 1, 2, 3, 7, 8, 9, 320, 1000] {
                let (mut one, mut many) = (
                    ColBuf::new(ColumnType::String),
                    ColBuf::new(ColumnType::String),
                );
                for b in [&mut one, &mut many] {
                    b.push_str(b"before");
                    b.push_null();
                }
                (0..n).for_each(|_| one.push_str(s));
                (0..n).for_each(|_| one.push_null());
                many.push_str_n(s, n);
                many.push_nulls(n);
                assert_eq!(format!("{one:?}"), format!("{many:?}"), "{n} x {s:?}");
            }
        }
    }

    /// A column of each type with nulls; strings with one in sixteen distinct, long values (a
    /// dictionary that outgrows its limit and falls back to PLAIN) and with few.
    fn batch(rows: usize, offset: usize) -> Vec<ColBuf> {
        let mut cols = vec![
            ColBuf::new(ColumnType::String),
            ColBuf::new(ColumnType::String),
            ColBuf::new(ColumnType::Decimal),
            ColBuf::new(ColumnType::Integer),
            ColBuf::new(ColumnType::Date),
            ColBuf::new(ColumnType::Timestamp),
        ];
        for r in offset..offset + rows {
            if r % 7 == 3 {
                cols.iter_mut().for_each(ColBuf::push_null);
                continue;
            }
            cols[0].push_str(format!("{:0>1000}", r / 16).as_bytes());
            cols[1].push_str(["", "EUR", "USD"][r % 3].as_bytes());
            if let Values::Dec(v) = &mut cols[2].values {
                v.push(r as i128 * 1_000_000_007 - 5);
            }
            if let Values::Int(v) | Values::Ts(v) = &mut cols[3].values {
                v.push(-(r as i64));
            }
            if let Values::Date(v) = &mut cols[4].values {
                v.push((r % 40) as i32);
            }
            if let Values::Int(v) | Values::Ts(v) = &mut cols[5].values {
                v.push(r as i64 * 1_000_000);
            }
            cols[2..].iter_mut().for_each(|c| c.defs.push(1));
        }
        cols
    }

    #[test]
    fn chunks_read_back_in_the_parquet_crates_reader() {
        let names = ["s", "d", "n", "i", "day", "ts"];
        let types = [
            ColumnType::String,
            ColumnType::String,
            ColumnType::Decimal,
            ColumnType::Integer,
            ColumnType::Date,
            ColumnType::Timestamp,
        ];
        let columns: Vec<(String, ColumnType)> = names
            .iter()
            .zip(types)
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        let mut sink = Sink::new(Vec::new(), &columns, Vec::new(), 1, (30_000, 64 << 20)).unwrap();
        let (batch_rows, batches) = (12_000, 6);
        for b in 0..batches {
            let cols = batch(batch_rows, b * batch_rows);
            sink.write_batch(&cols.iter().collect::<Vec<_>>()).unwrap();
        }
        let (bytes, groups) = sink.finish().unwrap();
        assert_eq!(groups, 3);
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let meta = reader.metadata();
        let encodings = |c: usize| meta.row_group(0).column(c).encodings().collect::<Vec<_>>();
        use parquet::basic::Encoding;
        // The long strings' dictionary outgrows its limit: both encodings in one chunk.
        assert!(
            encodings(0).contains(&Encoding::RLE_DICTIONARY),
            "{:?}",
            encodings(0)
        );
        assert!(
            encodings(0).contains(&Encoding::PLAIN),
            "{:?}",
            encodings(0)
        );
        assert!(
            encodings(1).contains(&Encoding::RLE_DICTIONARY),
            "{:?}",
            encodings(1)
        );
        let mut n = 0;
        for (r, row) in reader.get_row_iter(None).unwrap().enumerate() {
            let row = row.unwrap();
            let fields: Vec<&Field> = row.get_column_iter().map(|(_, f)| f).collect();
            if r % 7 == 3 {
                assert!(fields.iter().all(|f| matches!(f, Field::Null)), "row {r}");
            } else {
                assert_eq!(
                    fields[0],
                    &Field::Str(format!("{:0>1000}", r / 16)),
                    "row {r}"
                );
                assert_eq!(fields[1], &Field::Str(["", "EUR", "USD"][r % 3].into()));
                let Field::Decimal(d) = fields[2] else {
                    panic!("row {r}: {:?}", fields[2]);
                };
                let expected = r as i128 * 1_000_000_007 - 5;
                assert_eq!(d.data(), &expected.to_be_bytes()[..], "row {r}");
                assert_eq!(fields[3], &Field::Long(-(r as i64)));
                assert_eq!(fields[4], &Field::Date((r % 40) as i32));
                assert_eq!(fields[5], &Field::TimestampMicros(r as i64 * 1_000_000));
            }
            n += 1;
        }
        assert_eq!(n, batch_rows * batches);
        // Chunk statistics: min and max over the non-null values, and the nulls.
        let stats = meta.row_group(0).column(3).statistics().unwrap();
        assert_eq!(stats.null_count_opt(), Some(30_000 / 7 + 1));
        let Statistics::Int64(s) = stats else {
            panic!("{stats:?}");
        };
        assert_eq!((s.min_opt(), s.max_opt()), (Some(&-29_999), Some(&0)));
    }

    #[test]
    fn short_strings_copied_ahead_and_repeated_rows_keep_their_values() {
        let line = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ";
        let mut col = ColBuf::new(ColumnType::String);
        let mut expected = Vec::new();
        for start in [0, 3, 10] {
            for n in [0, 1, 15, 16, 17, 31, 32, 33] {
                // All the rest of the line ahead, and exactly the string (no read-ahead).
                for ahead in [&line[start..], &line[start..start + n]] {
                    col.push_str_ahead(&line[start..start + n], ahead);
                    expected.push(Some(line[start..start + n].to_vec()));
                }
            }
        }
        col.repeat_last();
        expected.push(expected.last().cloned().flatten());
        col.push_null();
        col.repeat_last();
        expected.extend([None, None]);
        let mut k = 0;
        let got: Vec<Option<Vec<u8>>> = col
            .defs
            .iter()
            .map(|&d| {
                (d == 1).then(|| {
                    k += 1;
                    col.str_at(k - 1).to_vec()
                })
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_dictionary_past_65536_entries_reads_back() {
        let columns = vec![("i".to_string(), ColumnType::Integer)];
        let mut sink = Sink::new(Vec::new(), &columns, Vec::new(), 1, (1 << 20, 64 << 20)).unwrap();
        // The first batch looks low-cardinality, so the column keeps a dictionary; the next
        // ones are all distinct and take it past two-byte indices.
        let value = |r: usize| {
            if r < 10_000 {
                (r % 10) as i64
            } else {
                r as i64
            }
        };
        for b in 0..9 {
            let mut col = ColBuf::new(ColumnType::Integer);
            for r in b * 10_000..(b + 1) * 10_000 {
                if let Values::Int(v) = &mut col.values {
                    v.push(value(r));
                }
                col.defs.push(1);
            }
            sink.write_batch(&[&col]).unwrap();
        }
        let (bytes, _) = sink.finish().unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let read: Vec<i64> = reader
            .get_row_iter(None)
            .unwrap()
            .map(
                |row| match row.unwrap().get_column_iter().next().unwrap().1 {
                    Field::Long(v) => *v,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(read, (0..90_000).map(value).collect::<Vec<_>>());
        let encodings: Vec<_> = reader
            .metadata()
            .row_group(0)
            .column(0)
            .encodings()
            .collect();
        assert!(
            encodings.contains(&parquet::basic::Encoding::RLE_DICTIONARY),
            "{encodings:?}"
        );
    }
}
