//! Line scanning into column buffers, with the running sums and per-customer totals.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender};

use tracing::debug;

use super::key_index::KeyIndex;
use super::recent::Recent;
use super::*;
use crate::calendar::{parse_date, parse_timestamp};
use crate::columns::{ColBuf, Values};
use crate::scan::{KeyPattern, Scanner, Token};
use crate::schema::ColumnType;
use crate::unescape::unescape;

const NO_COLUMN: u32 = u32::MAX;

/// A column as the scanner's fast path sees it.
struct Slot {
    /// `"Name":`, for the fast path of keys in their usual order (none for names that would
    /// need escaping).
    pattern: Option<KeyPattern>,
    /// `,"Name":`: a member after the first, recognised with the comma before it.
    after_comma: Option<KeyPattern>,
    ty: ColumnType,
    /// Row id that last set the column (duplicate keys, nulls for missing keys).
    stamp: u64,
}

/// Line scanning into column buffers, with the running sums.
pub(super) struct Parser<'a> {
    schema: &'a Schema,
    options: &'a ConvertOptions,
    /// Names of all columns (known, then unknown); their types are in `slots`.
    names: Vec<Box<[u8]>>,
    /// What the scanner needs of each column on its fast path, together: one bounds check
    /// and one place in cache per key instead of one per array (profiled).
    slots: Vec<Slot>,
    exact: HashMap<Box<[u8]>, u32>,
    lower: HashMap<Box<[u8]>, u32>,
    /// Column seen at each key position last time: rows repeat the same key order.
    expect: Vec<u32>,
    /// Each column's last decimal, date and timestamp (one of them used, by its type).
    recent_dec: Vec<Recent<(Decimal, bool)>>,
    recent_date: Vec<Recent<i32>>,
    recent_time: Vec<Recent<i64>>,
    row_id: u64,
    /// After the first row group the column set is fixed.
    frozen: bool,
    late_names: Vec<String>,
    group: Group,
    group_bytes: usize,
    line_no: u64,
    rows: u64,
    bytes_json: u64,
    sums: Vec<i128>,
    /// Decimal values with more places than the scale, rounded.
    rounded: u64,
    totals_index: KeyIndex,
    totals: Vec<Tally>,
    /// The previous row's total and its key.
    last_total: Option<usize>,
    last_key: Vec<u8>,
    invoice: (Option<usize>, Option<usize>, Vec<usize>),
    /// `ProductId` and `SkuId` columns when totals are split by product.
    product_cols: Option<(usize, usize)>,
    key_buf: Vec<u8>,
    late_buf: Vec<u8>,
    pending: Vec<u8>,
}

impl<'a> Parser<'a> {
    pub(super) fn new(schema: &'a Schema, options: &'a ConvertOptions) -> Self {
        let mut p = Parser {
            schema,
            options,
            names: Vec::new(),
            slots: Vec::new(),
            exact: HashMap::new(),
            lower: HashMap::new(),
            expect: Vec::new(),
            recent_dec: Vec::new(),
            recent_date: Vec::new(),
            recent_time: Vec::new(),
            row_id: 0,
            frozen: false,
            late_names: Vec::new(),
            group: Group {
                cols: Vec::new(),
                late: ColBuf::new(ColumnType::String),
                rows: 0,
            },
            group_bytes: 0,
            line_no: 0,
            rows: 0,
            bytes_json: 0,
            sums: vec![0; schema.columns().len()],
            rounded: 0,
            totals_index: KeyIndex::default(),
            totals: Vec::new(),
            last_total: None,
            last_key: Vec::new(),
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
        let plain = !name.contains(['"', '\\']) && !name.chars().any(char::is_control);
        self.slots.push(Slot {
            pattern: plain.then(|| KeyPattern::new(format!("\"{name}\":").into_bytes())),
            after_comma: plain.then(|| KeyPattern::new(format!(",\"{name}\":").into_bytes())),
            ty,
            stamp: 0,
        });
        self.exact.insert(name.as_bytes().into(), i);
        self.lower
            .entry(name.to_ascii_lowercase().into_bytes().into())
            .or_insert(i);
        self.recent_dec.push(Recent::default());
        self.recent_date.push(Recent::default());
        self.recent_time.push(Recent::default());
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

    pub(super) fn parse_all(
        &mut self,
        input: &mut Inflater<impl std::io::Read>,
        groups: &SyncSender<ToEncoder>,
        back: &Receiver<Group>,
    ) -> Result<(), Error> {
        while let Some(data) = input.next_chunk()? {
            self.bytes_json += data.len() as u64;
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
        if simdutf8::basic::from_utf8(line).is_err() {
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
        loop {
            let expected = self.expect.get(pos).copied().unwrap_or(NO_COLUMN);
            let slot = self.slots.get(expected as usize);
            // After the first member, the comma and the expected key are one comparison: the
            // separator needs no scanning of its own when rows keep their key order.
            let c = if pos > 0
                && slot
                    .and_then(|s| s.after_comma.as_ref())
                    .is_some_and(|p| sc.eat(p))
            {
                expected
            } else if !sc.begin_member().map_err(syntax)? {
                break;
            } else if slot
                .and_then(|s| s.pattern.as_ref())
                .is_some_and(|p| sc.eat(p))
            {
                expected
            } else {
                match self.slow_key(&mut sc, pos, line_no)? {
                    Some(c) => c,
                    // A late unknown key: its value is already kept in the JSON column.
                    None => {
                        pos += 1;
                        continue;
                    }
                }
            };
            pos += 1;
            let ci = c as usize;
            let ty = self.claim(ci, row_id, line_no)?;
            set += 1;
            // Most members are a string without escapes in a string column: copied at once,
            // without a token or `put`'s dispatch.
            match ty {
                ColumnType::String => {
                    if let Some((content, ahead)) = sc.plain_string() {
                        self.group.cols[ci].push_str_ahead(content, ahead);
                        continue;
                    }
                    if self.group.cols[ci].try_push_str_with(|b| sc.escaped_string(b)) {
                        continue;
                    }
                }
                // Amounts, prices and rates: a number read as it is found.
                ColumnType::Decimal => {
                    if let Some(text) = sc.plain_number() {
                        self.push_decimal(ci, text)
                            .map_err(|reason| self.value_error(ci, line_no, reason))?;
                        continue;
                    }
                }
                _ => {}
            }
            let (token, raw) = sc.value_raw().map_err(syntax)?;
            self.put(ci, ty, token, raw, line)
                .map_err(|reason| self.value_error(ci, line_no, reason))?;
        }
        self.end_row(row_id, set, line.len(), groups, back)
    }

    /// Appends decimal `text` to decimal column `ci`, counting a rounded value and adding it
    /// to the column's sum; the error is the reason (the caller adds context).
    #[inline(always)]
    fn push_decimal(&mut self, ci: usize, text: &[u8]) -> Result<(), String> {
        let (d, rounded) = self.recent_dec[ci]
            .parse(text, Decimal::parse)
            .map_err(|e| value_reason(e, text))?;
        self.rounded += u64::from(rounded);
        self.sums[ci] = self.sums[ci]
            .checked_add(d.scaled())
            .ok_or_else(|| "the column's sum overflows DECIMAL(38)".to_string())?;
        let col = &mut self.group.cols[ci];
        if let Values::Dec(v) = &mut col.values {
            v.push(d.scaled());
        }
        col.defs.push(1);
        Ok(())
    }

    /// A value of column `ci` refused, with its line and the reason.
    #[cold]
    fn value_error(&self, ci: usize, line_no: u64, reason: String) -> Error {
        Error::Value {
            line: line_no,
            column: String::from_utf8_lossy(&self.names[ci]).into_owned(),
            reason,
        }
    }

    /// Marks column `ci` as given a value in row `row_id` (a second value is an error);
    /// returns its type.
    #[inline(always)]
    fn claim(&mut self, ci: usize, row_id: u64, line_no: u64) -> Result<ColumnType, Error> {
        let slot = &mut self.slots[ci];
        if slot.stamp == row_id {
            return Err(Error::DuplicateKey {
                line: line_no,
                key: String::from_utf8_lossy(&self.names[ci]).into_owned(),
            });
        }
        slot.stamp = row_id;
        Ok(slot.ty)
    }

    /// Nulls for the columns this row left out, the late keys' JSON, the sums; flushes a full
    /// row group.
    fn end_row(
        &mut self,
        row_id: u64,
        set: usize,
        line_len: usize,
        groups: &SyncSender<ToEncoder>,
        back: &Receiver<Group>,
    ) -> Result<(), Error> {
        if set < self.group.cols.len() {
            for (ci, col) in self.group.cols.iter_mut().enumerate() {
                if self.slots[ci].stamp != row_id {
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
        self.group_bytes += line_len;
        if self.group.rows >= self.options.row_group_rows
            || self.group_bytes >= self.options.row_group_bytes
        {
            self.flush(groups, back)?;
        }
        Ok(())
    }

    /// Resolves a key off the fast path at key position `pos`: a known column, a new unknown
    /// column (while the first row group fills), or `None` for a late unknown key, whose value
    /// this consumes into the JSON column.
    fn slow_key(
        &mut self,
        sc: &mut Scanner<'_>,
        pos: usize,
        line_no: u64,
    ) -> Result<Option<u32>, Error> {
        let syntax = |e: crate::scan::SyntaxError| Error::Syntax {
            line: line_no,
            reason: e.to_string(),
        };
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
        let col = match self.lookup(pos, key) {
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
                self.expect.truncate(pos);
                Some(c)
            }
            None => None,
        };
        if col.is_none() {
            let (_, raw) = sc.value_raw().map_err(syntax)?;
            self.keep_late(key, key_raw, raw, line_no)?;
        }
        self.key_buf = key_buf;
        Ok(col)
    }

    /// Keeps a late unknown key verbatim in this row's JSON column.
    fn keep_late(
        &mut self,
        key: &[u8],
        key_raw: &[u8],
        raw: &[u8],
        line_no: u64,
    ) -> Result<(), Error> {
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
    /// Adds one value to column `ci`; `line` is the line the value is in.
    fn put(
        &mut self,
        ci: usize,
        ty: ColumnType,
        token: Token<'_>,
        raw: &[u8],
        line: &[u8],
    ) -> Result<(), String> {
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
                    Token::Str { content, .. } => {
                        // The line from the string on (the pointers are only compared).
                        let at = content.as_ptr() as usize - line.as_ptr() as usize;
                        col.push_str_ahead(content, &line[at..]);
                    }
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
        let reason = |e: crate::value::ValueError| value_reason(e, text);
        match &mut col.values {
            Values::Dec(_) => return self.push_decimal(ci, text),
            Values::Int(v) => v.push(match Decimal::parse_whole(text) {
                Some(n) => n,
                None => Decimal::parse(text)
                    .and_then(|(d, rounded)| {
                        if rounded {
                            Err(crate::value::ValueError::NotIntegral)
                        } else {
                            d.to_integer()
                        }
                    })
                    .map_err(reason)?,
            }),
            Values::Date(v) => v.push(
                self.recent_date[ci]
                    .parse(text, parse_date)
                    .map_err(reason)?,
            ),
            Values::Ts(v) => v.push(
                self.recent_time[ci]
                    .parse(text, parse_timestamp)
                    .map_err(reason)?,
            ),
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
            if p.slots[ci].stamp == row_id && c.defs.last() == Some(&1) {
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
        // Rows of one customer tend to follow each other: the previous row's total first.
        let last = self
            .last_total
            .filter(|_| crate::dict::same(&self.last_key, &key));
        let idx = match last.or_else(|| self.totals_index.get(&key)) {
            Some(i) => i,
            None => {
                let i = self.totals_index.insert(&key);
                debug_assert_eq!(i, self.totals.len());
                let text = |ci| String::from_utf8_lossy(last_str(self, ci, row_id)).into_owned();
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
                i
            }
        };
        if last.is_none() {
            self.last_key.clone_from(&key);
            self.last_total = Some(idx);
        }
        self.key_buf = key;
        let t = &mut self.totals[idx];
        t.rows += 1;
        for (k, &ai) in self.invoice.2.iter().enumerate() {
            let c = &self.group.cols[ai];
            if self.slots[ai].stamp == row_id && c.defs.last() == Some(&1) {
                if let Values::Dec(v) = &c.values {
                    let last = *v.last().expect("a value was pushed");
                    t.amounts[k] = t.amounts[k].checked_add(last).ok_or_else(|| Error::Value {
                        line: self.line_no,
                        column: String::from_utf8_lossy(&self.names[ai]).into_owned(),
                        reason: "the customer total overflows DECIMAL(38)".into(),
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
        // A batch the encoder gave back, or a new one shaped as this one.
        let mut next = back.try_recv().unwrap_or_else(|_| Group {
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

    pub(super) fn finish(&mut self, groups: &SyncSender<ToEncoder>) -> Result<(), ()> {
        self.open(groups).map_err(|_| ())?;
        groups.send(ToEncoder::Finish).map_err(|_| ())
    }

    pub(super) fn into_report(
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
            focus_rows: 0,
            row_groups,
            rounded_values: self.rounded,
            unknown_columns,
            sums,
            customer_totals,
        }
    }
}

/// Why a value was refused, with the start of its text.
fn value_reason(e: crate::value::ValueError, text: &[u8]) -> String {
    format!(
        "{e}: {:?}",
        String::from_utf8_lossy(&text[..text.len().min(60)])
    )
}
