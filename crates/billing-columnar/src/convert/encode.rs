//! The encoder thread: opens the Parquet sinks once the unknown columns are known and writes
//! each row group to the typed view, the FOCUS view, or both (on two threads).

use std::io::Write;
use std::sync::mpsc::{Receiver, Sender};
use std::thread;

use tracing::debug;

use super::output::Pipe;
use super::{ConvertOptions, Group, Outputs, ToEncoder, FOCUS_UNKNOWN_PREFIX, LATE_UNKNOWN_COLUMN};
use crate::columns::{ColBuf, Sink};
use crate::focus::{self, FOCUS_VERSION};
use crate::focus_rules;
use crate::schema::{ColumnType, Schema};
use crate::Error;

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

/// The typed view's columns: the schema's, then the first group's unknown keys, then the late
/// keys' JSON column.
fn typed_fields(schema: &Schema, unknown: &[String]) -> Vec<(String, ColumnType)> {
    let mut fields: Vec<(String, ColumnType)> = schema
        .columns()
        .iter()
        .map(|c| (c.name.to_string(), c.ty))
        .collect();
    fields.extend(unknown.iter().map(|n| (n.clone(), ColumnType::String)));
    fields.push((LATE_UNKNOWN_COLUMN.to_string(), ColumnType::String));
    fields
}

/// The FOCUS view's columns: FOCUS's, then the unknown keys as extension columns, then the late
/// keys' JSON column.
fn focus_fields(unknown: &[String]) -> Vec<(String, ColumnType)> {
    let mut fields = focus::focus_fields();
    fields.extend(
        unknown
            .iter()
            .map(|n| (format!("{FOCUS_UNKNOWN_PREFIX}{n}"), ColumnType::String)),
    );
    fields.push((LATE_UNKNOWN_COLUMN.to_string(), ColumnType::String));
    fields
}

/// Opens a view's file with the options' row-group bounds.
fn open_sink<W: Write + Send>(
    out: W,
    fields: &[(String, ColumnType)],
    md: Vec<(String, String)>,
    options: &ConvertOptions,
) -> Result<Sink<W>, Error> {
    Sink::new(
        out,
        fields,
        md,
        options.zstd_level,
        (options.row_group_rows, options.row_group_encoded_bytes),
    )
}

/// The encoder's state between batches.
struct Encoder<'a> {
    schema: &'a Schema,
    options: &'a ConvertOptions,
    /// Outputs not opened yet; each opens with its first row group (or at the end of an input
    /// without rows), so that encodings can be chosen from real values.
    outputs: Outputs,
    typed: Option<Sink<Pipe>>,
    focus: Option<Sink<Pipe>>,
    focus_cols: Vec<ColBuf>,
    /// The unknown column names; the column set arrives before the first group.
    unknown: Vec<String>,
    batches: u32,
    /// Rows written to the FOCUS view (Tax rows included).
    focus_rows: u64,
    /// Aligned row groups and the FOCUS columns taken from the typed file; `None` until both
    /// files are open, and for datasets whose FOCUS rows are not the typed rows (Tax rows).
    share: Option<Share>,
}

/// The FOCUS columns that repeat typed ones, and which of them the open row group shares.
struct Share {
    /// The typed column each FOCUS column repeats, by FOCUS column.
    source: Vec<Option<usize>>,
    /// The FOCUS columns taken from the typed file in the open row group.
    mask: Vec<bool>,
}

impl Share {
    /// Decides, before a batch, which repeated columns stay shared: a typed column with a
    /// value its FOCUS copy changes (an empty string, null there; a JSON object without braces)
    /// differs from then on, and the FOCUS file continues from a copy of the typed chunk,
    /// which held the same values until now.
    fn before_batch<T: Write + Send, F: Write + Send>(
        &mut self,
        schema: &Schema,
        g: &Group,
        typed: &Sink<T>,
        focus: &mut Sink<F>,
    ) {
        if typed.open_rows() == 0 {
            self.mask = self.source.iter().map(Option::is_some).collect();
        }
        for (k, source) in self.source.iter().enumerate() {
            let Some(j) = *source else { continue };
            if self.mask[k] && focus::differs(schema, k, &g.cols[j]) {
                if let Some(chunk) = typed.chunk(j).filter(|_| typed.open_rows() > 0) {
                    focus.adopt(k, chunk.clone());
                }
                self.mask[k] = false;
            }
        }
        focus.set_shared(&self.mask);
    }

    /// Writes the row groups both files sealed: the typed one first, then the FOCUS one with
    /// the typed chunks of its shared columns.
    fn write_sealed<T: Write + Send, F: Write + Send>(
        &self,
        typed: &mut Sink<T>,
        focus: &mut Sink<F>,
    ) -> Result<(), Error> {
        let (ts, fs) = (typed.take_sealed(), focus.take_sealed());
        if ts.len() != fs.len() {
            return Err(Error::Internal("the two views' row groups are not aligned"));
        }
        for (t, f) in ts.into_iter().zip(fs) {
            let written = typed.write_sealed(t, |_| None)?;
            focus.write_sealed(f, |k| {
                self.source
                    .get(k)
                    .copied()
                    .flatten()
                    .and_then(|j| written.get(j).cloned())
            })?;
        }
        Ok(())
    }
}

/// Encoder thread: writes the batches `rx` delivers and hands each back for reuse; returns
/// what it wrote.
pub(super) fn encode_loop(
    schema: &Schema,
    options: &ConvertOptions,
    outputs: Outputs,
    rx: Receiver<ToEncoder>,
    back: Sender<Group>,
) -> Result<Written, Error> {
    let mut enc = Encoder {
        schema,
        options,
        outputs,
        typed: None,
        focus: None,
        focus_cols: Vec::new(),
        unknown: Vec::new(),
        batches: 0,
        focus_rows: 0,
        share: None,
    };
    for msg in rx {
        match msg {
            ToEncoder::Open(u) => enc.unknown = u,
            ToEncoder::Group(g) => {
                enc.write_group(&g)?;
                debug!(rows = g.rows, batch = enc.batches, "batch written");
                let _ = back.send(g);
            }
            ToEncoder::Finish => return enc.finish(),
        }
    }
    Err(Error::Internal("conversion aborted"))
}

impl Encoder<'_> {
    fn write_group(&mut self, g: &Group) -> Result<(), Error> {
        let mut refs: Vec<&ColBuf> = g.cols.iter().collect();
        refs.push(&g.late);
        if let Some(out) = self.outputs.typed.take() {
            let md = metadata(self.schema, "typed", &self.unknown);
            let fields = typed_fields(self.schema, &self.unknown);
            self.typed = Some(open_sink(out, &fields, md, self.options)?);
            self.align()?;
        }
        if let (Some(share), Some(t), Some(f)) = (&mut self.share, &self.typed, &mut self.focus) {
            share.before_batch(self.schema, g, t, f);
        }
        let with_focus = self.focus.is_some() || self.outputs.focus.is_some();
        let Self {
            schema,
            options,
            outputs,
            typed,
            focus,
            focus_cols,
            unknown,
            focus_rows,
            share,
            ..
        } = self;
        // With both views, the typed file is encoded on a second thread while this one derives
        // and encodes the FOCUS file: encoding both on one thread made it the slowest stage of
        // the pipeline.
        thread::scope(|s| -> Result<(), Error> {
            let typed_job = match typed.as_mut() {
                Some(sink) if with_focus => Some(s.spawn(|| sink.write_batch(&refs))),
                Some(sink) => {
                    sink.write_batch(&refs)?;
                    None
                }
                None => None,
            };
            let focus_result = if with_focus {
                let view = FocusView {
                    schema,
                    options,
                    unknown,
                    cols: focus_cols,
                    out: &mut outputs.focus,
                    sink: focus,
                    rows: focus_rows,
                    skip: share.as_ref().map_or(&[][..], |s| &s.mask[..]),
                };
                view.write(g)
            } else {
                Ok(())
            };
            if let Some(job) = typed_job {
                job.join()
                    .map_err(|_| Error::Internal("typed encoder panicked"))??;
            }
            focus_result
        })?;
        if let (Some(share), Some(t), Some(f)) = (&self.share, &mut self.typed, &mut self.focus) {
            // The byte bound, between batches: both files' pages count.
            if t.buffered() + f.buffered() >= self.options.row_group_encoded_bytes {
                t.seal()?;
                f.seal()?;
            }
            share.write_sealed(t, f)?;
        }
        self.batches += 1;
        Ok(())
    }

    /// With both views of a dataset without Tax rows (each FOCUS row is its typed row), opens
    /// the FOCUS file now and aligns the two files' row groups, so that FOCUS columns that
    /// repeat typed ones take the typed chunks instead of being encoded twice.
    fn align(&mut self) -> Result<(), Error> {
        let taxed = self.schema.index_of("TaxTotal").is_some() || self.options.tax_rows_only;
        if taxed || self.typed.is_none() {
            return Ok(());
        }
        let Some(out) = self.outputs.focus.take() else {
            return Ok(());
        };
        let fields = focus_fields(&self.unknown);
        let md = metadata(self.schema, "focus", &self.unknown);
        let mut focus = open_sink(out, &fields, md, self.options)?;
        let mut source = vec![None; fields.len()];
        for (k, j) in focus::repeated_columns(self.schema) {
            source[k] = Some(j);
        }
        focus.set_aligned();
        if let Some(t) = self.typed.as_mut() {
            t.set_aligned();
        }
        self.focus = Some(focus);
        self.share = Some(Share {
            source,
            mask: vec![false; fields.len()],
        });
        Ok(())
    }

    /// Opens what no row group opened, writes the footers; returns what was written.
    fn finish(mut self) -> Result<Written, Error> {
        if let (Some(share), Some(t), Some(f)) = (&self.share, &mut self.typed, &mut self.focus) {
            t.seal()?;
            f.seal()?;
            share.write_sealed(t, f)?;
        }
        if let Some(out) = self.outputs.typed.take() {
            let fields = typed_fields(self.schema, &self.unknown);
            let md = metadata(self.schema, "typed", &self.unknown);
            self.typed = Some(open_sink(out, &fields, md, self.options)?);
        }
        if let Some(out) = self.outputs.focus.take() {
            let fields = focus_fields(&self.unknown);
            let md = metadata(self.schema, "focus", &self.unknown);
            self.focus = Some(open_sink(out, &fields, md, self.options)?);
        }
        let t = self.typed.map(Sink::finish).transpose()?;
        let f = self.focus.map(Sink::finish).transpose()?;
        // Both views close their row groups on the same rows unless one reaches its byte
        // bound first; the report gives the typed view's count when there is one.
        let groups = t
            .as_ref()
            .map(|(_, g)| *g)
            .or(f.as_ref().map(|(_, g)| *g))
            .unwrap_or(0);
        Ok(Written {
            typed_bytes: t.map_or(0, |(pipe, _)| pipe.written()),
            focus_bytes: f.map_or(0, |(pipe, _)| pipe.written()),
            row_groups: groups,
            focus_rows: self.focus_rows,
        })
    }
}

/// What the encoder wrote.
pub(super) struct Written {
    pub typed_bytes: u64,
    pub focus_bytes: u64,
    pub row_groups: u32,
    pub focus_rows: u64,
}

/// The FOCUS side of one row group, borrowed from the encoder while the typed side encodes.
struct FocusView<'e> {
    schema: &'e Schema,
    options: &'e ConvertOptions,
    unknown: &'e [String],
    cols: &'e mut Vec<ColBuf>,
    out: &'e mut Option<Pipe>,
    sink: &'e mut Option<Sink<Pipe>>,
    rows: &'e mut u64,
    /// FOCUS columns taken from the typed file: not derived.
    skip: &'e [bool],
}

impl FocusView<'_> {
    /// Derives the FOCUS columns of `g` and writes them (opening the file on the first group).
    fn write(mut self, g: &Group) -> Result<(), Error> {
        let known = self.schema.columns().len();
        let day = |(y, m, d): (i64, u32, u32)| crate::calendar::days_from_civil(y, m, d);
        let ctx = focus_rules::RowCtx {
            status: self.options.billing_status,
            period: self
                .options
                .billing_period
                .map(|p| (day(p.start), day(p.end))),
        };
        focus::derive(
            self.schema,
            &g.cols[..known],
            g.rows,
            &ctx,
            self.skip,
            self.cols,
        )?;
        let taxed = focus::append_tax_rows(self.schema, &g.cols[..known], self.cols);
        // Unknown columns repeat the taxed rows too (copies only when there are Tax rows).
        let mut extra: Vec<ColBuf> = if taxed.is_empty() {
            Vec::new()
        } else {
            g.cols[known..]
                .iter()
                .chain([&g.late])
                .map(|c| {
                    let mut c = c.clone();
                    c.repeat_rows(&taxed);
                    c
                })
                .collect()
        };
        if self.options.tax_rows_only {
            // Only the Tax rows appended after the charges: the charges land elsewhere.
            if taxed.is_empty() {
                self.open()?;
                return Ok(());
            }
            for c in self.cols.iter_mut().chain(extra.iter_mut()) {
                c.drop_front(g.rows);
            }
        }
        *self.rows += (g.rows * usize::from(!self.options.tax_rows_only) + taxed.len()) as u64;
        self.open()?;
        let mut refs: Vec<&ColBuf> = self.cols.iter().collect();
        if taxed.is_empty() {
            refs.extend(g.cols[known..].iter());
            refs.push(&g.late);
        } else {
            refs.extend(extra.iter());
        }
        if let Some(sink) = self.sink.as_mut() {
            sink.write_batch(&refs)?;
        }
        Ok(())
    }

    /// Opens the file on the first group.
    fn open(&mut self) -> Result<(), Error> {
        if let Some(out) = self.out.take() {
            let md = metadata(self.schema, "focus", self.unknown);
            let fields = focus_fields(self.unknown);
            *self.sink = Some(open_sink(out, &fields, md, self.options)?);
        }
        Ok(())
    }
}
