//! Column buffers for one row group, and writing them to Parquet with the low-level column
//! writer API (no arrow: a much smaller build, and values go straight from our buffers).

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::{ByteArray, FixedLenByteArray};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
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

    /// Whether a dictionary would not pay for this column, judged on its first values: more
    /// than half of them distinct (UUID-like strings, amounts), where a dictionary costs a
    /// hash per value and holds every value again for no saving; or a single value repeated
    /// (currency, partner), which zstd reduces to almost nothing without the hashing.
    pub fn dictionary_useless(&self) -> bool {
        use std::collections::HashSet;
        fn judge<T: std::hash::Hash + Eq>(values: impl Iterator<Item = T>) -> bool {
            let mut seen = HashSet::with_capacity(DICTIONARY_SAMPLE);
            let mut n = 0usize;
            for v in values.take(DICTIONARY_SAMPLE) {
                seen.insert(v);
                n += 1;
            }
            n >= MIN_VALUES_FOR_PLAIN && (seen.len() * 2 > n || seen.len() == 1)
        }
        match &self.values {
            Values::Str { ends, .. } => judge((0..ends.len()).map(|i| self.str_at(i))),
            Values::Dec(v) => judge(v.iter()),
            Values::Int(v) | Values::Ts(v) => judge(v.iter()),
            Values::Date(v) => judge(v.iter()),
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

/// Below this many values in the first row group a column keeps its dictionary.
const MIN_VALUES_FOR_PLAIN: usize = 64;
/// How many of a column's first values decide whether it keeps its dictionary.
const DICTIONARY_SAMPLE: usize = 1024;

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

/// One Parquet file being written, a row group at a time.
pub(crate) struct Sink<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    types: Vec<ColumnType>,
    scratch: Vec<ByteArray>,
    flba: Vec<FixedLenByteArray>,
    /// Big-endian decimal bytes of the column being written.
    raw: Vec<u8>,
}

impl<W: Write + Send> Sink<W> {
    pub fn new(
        out: W,
        columns: &[(String, ColumnType)],
        plain: &[bool],
        metadata: Vec<(String, String)>,
        zstd_level: i32,
    ) -> Result<Self, Error> {
        let fields = columns
            .iter()
            .map(|(n, t)| field(n, *t).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let schema = Type::group_type_builder("schema")
            .with_fields(fields)
            .build()?;
        let mut props = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(zstd_level)?))
            // Chunk statistics on integers, dates and timestamps let readers prune row groups.
            // Not on strings: their min/max was the encoder's largest cost (profiled). Not on
            // decimals: the min/max values are slices of the row group's value buffer, and the
            // file metadata would keep every such buffer alive until the footer (found as
            // resident memory growing with the row count).
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by(format!("billing-columnar {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(
                metadata
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v))
                    .collect(),
            ));
        for ((name, ty), &plain) in columns.iter().zip(plain) {
            if plain {
                // Nearly unique columns (decided on the first row group): plain encoding, no
                // dictionary. The dictionary's hashing was the encoder's largest cost.
                props = props.set_column_dictionary_enabled(ColumnPath::from(name.as_str()), false);
            }
            // Must stay off for these: `write_group` hands their writers borrowed values (see
            // `borrowed`), which min/max statistics would keep until the footer.
            if matches!(ty, ColumnType::String | ColumnType::Decimal) {
                props = props.set_column_statistics_enabled(
                    ColumnPath::from(name.as_str()),
                    EnabledStatistics::None,
                );
            }
        }
        let props = props.build();
        Ok(Self {
            writer: SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props))?,
            types: columns.iter().map(|c| c.1).collect(),
            scratch: Vec::new(),
            flba: Vec::new(),
            raw: Vec::new(),
        })
    }

    /// Writes one row group; `cols` are in schema order and all have the same row count.
    pub fn write_group(&mut self, cols: &[&ColBuf]) -> Result<(), Error> {
        debug_assert_eq!(cols.len(), self.types.len());
        let mut rg = self.writer.next_row_group()?;
        let mut i = 0;
        while let Some(mut cw) = rg.next_column()? {
            let col = cols[i];
            let defs = Some(&col.defs[..]);
            // Values are borrowed views of the column buffer (see `borrowed`): no copy, and no
            // refcount traffic per value (cloning and dropping a slice of a shared `Bytes`, two
            // atomic operations per value, was the encoder's largest cost after zstd).
            match (cw.untyped(), &col.values) {
                (ColumnWriter::ByteArrayColumnWriter(w), Values::Str { bytes, ends }) => {
                    // SAFETY: see `borrowed`; the views die with the column writer, closed below.
                    let all = unsafe { borrowed(bytes) };
                    self.scratch.clear();
                    let mut start = 0usize;
                    for &end in ends {
                        let end = end as usize;
                        self.scratch
                            .push(ByteArray::from(Bytes::from_static(&all[start..end])));
                        start = end;
                    }
                    // Cleared before `?` too: no view outlives this call, even on an error.
                    let written = w.write_batch(&self.scratch, defs, None);
                    self.scratch.clear();
                    written?;
                }
                (ColumnWriter::FixedLenByteArrayColumnWriter(w), Values::Dec(v)) => {
                    self.raw.clear();
                    for x in v {
                        self.raw.extend_from_slice(&x.to_be_bytes());
                    }
                    // SAFETY: as above; `raw` is not touched again before the column closes.
                    let all = unsafe { borrowed(&self.raw) };
                    self.flba.clear();
                    for k in 0..v.len() {
                        self.flba.push(FixedLenByteArray::from(ByteArray::from(
                            Bytes::from_static(&all[k * 16..k * 16 + 16]),
                        )));
                    }
                    let written = w.write_batch(&self.flba, defs, None);
                    self.flba.clear();
                    written?;
                }
                (ColumnWriter::Int64ColumnWriter(w), Values::Int(v) | Values::Ts(v)) => {
                    w.write_batch(v, defs, None)?;
                }
                (ColumnWriter::Int32ColumnWriter(w), Values::Date(v)) => {
                    w.write_batch(v, defs, None)?;
                }
                _ => return Err(Error::Internal("column buffer does not match its type")),
            }
            cw.close()?;
            i += 1;
        }
        rg.close()?;
        Ok(())
    }

    /// Finishes the file (footer) and returns the output.
    pub fn finish(self) -> Result<W, Error> {
        let mut out = self.writer.into_inner()?;
        // A buffered output would otherwise flush on drop and lose the error.
        out.flush().map_err(Error::Write)?;
        Ok(out)
    }
}

/// `bytes` with a lifetime that lets its pieces become `Bytes` whose clones and drops touch
/// no reference count (`Bytes::from_static`).
///
/// # Safety
///
/// Every clone must be gone before `bytes` is changed or freed. `write_group` guarantees this:
/// the values of a column go only to that column's writer, which is closed (or dropped with
/// its row group writer, on an error) before `write_group` returns; the parquet crate keeps byte-array values beyond the column
/// only as min/max statistics, which `Sink::new` turns off for string and decimal columns.
unsafe fn borrowed(bytes: &[u8]) -> &'static [u8] {
    // SAFETY: the caller keeps `bytes` alive and unchanged for as long as any view exists.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) }
}
