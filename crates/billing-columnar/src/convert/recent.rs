//! A column's recently parsed texts and their values, so that a repeated text is not parsed
//! again.

/// Longest text [`Recent`] keeps.
const RECENT_TEXT: usize = 32;
/// Texts [`Recent`] keeps per column, each in one of the two slots its first and last bytes
/// choose.
const SLOTS: usize = 64;

/// Texts parsed lately in a column and their values, so that a repeated text is not parsed
/// again: dates, timestamps, prices and exchange rates take a few to a few dozen values,
/// and comparing a text costs less than parsing it. Rows do not come in an order that
/// repeats them one after the other (the bench's unit prices and usage dates change on
/// nine rows of ten), so a text is kept in one of several slots rather than as the last
/// one only. Texts shorter than a word parse about as fast as they compare, so only longer
/// ones are kept; slots are allocated on the first text kept (most columns keep none).
#[derive(Default)]
pub(super) struct Recent<T> {
    slots: Option<Box<[Kept<T>; SLOTS]>>,
    /// Texts looked up and found, until [`TRIAL`] lookups decide whether the column keeps
    /// texts at all: amounts and quantities hardly repeat, and for them keeping costs more
    /// than it saves.
    lookups: u32,
    hits: u32,
    off: bool,
}

/// Lookups after which a column that found fewer than one text in eight stops keeping them.
const TRIAL: u32 = 1024;

#[derive(Clone, Copy)]
struct Kept<T> {
    text: [u8; RECENT_TEXT],
    /// 0 while nothing is kept.
    len: u8,
    value: T,
}

/// The slot of a text of 8 to [`RECENT_TEXT`] bytes: its length and first and last eight
/// bytes, mixed.
#[inline]
fn slot(text: &[u8]) -> usize {
    let n = text.len();
    let word = |i: usize| u64::from_le_bytes(text[i..i + 8].try_into().expect("8 bytes"));
    let w = word(0) ^ word(n - 8).rotate_left(29) ^ n as u64;
    crate::dict::fixed_hash(u128::from(w)) as usize % SLOTS
}

impl<T: Copy + Default> Recent<T> {
    /// `text`'s value, parsed by `parse` unless it is a text kept.
    #[inline]
    pub(super) fn parse<E>(
        &mut self,
        text: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<T, E>,
    ) -> Result<T, E> {
        if self.off || !(8..=RECENT_TEXT).contains(&text.len()) {
            return parse(text);
        }
        if self.lookups < TRIAL {
            self.lookups += 1;
            self.off = self.lookups == TRIAL && self.hits < TRIAL / 8;
        }
        // Two slots a text may be in (the newer first), so that texts sharing a pair are
        // both kept (with one slot each, 30 dates in 64 slots were parsed twice as often).
        let k = slot(text) & !1;
        if let Some(pair) = self.slots.as_ref().map(|s| &s[k..k + 2]) {
            for kept in pair {
                if crate::dict::same(&kept.text[..usize::from(kept.len)], text) {
                    self.hits += 1;
                    return Ok(kept.value);
                }
            }
        }
        let v = parse(text)?;
        let slots = self.slots.get_or_insert_with(|| {
            Box::new(
                [Kept {
                    text: [0; RECENT_TEXT],
                    len: 0,
                    value: T::default(),
                }; SLOTS],
            )
        });
        slots[k + 1] = slots[k];
        let kept = &mut slots[k];
        kept.text[..text.len()].copy_from_slice(text);
        kept.len = text.len() as u8;
        kept.value = v;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse_timestamp;
    use crate::value::Decimal;
    use std::cell::Cell;

    /// `f`, counting its calls in `calls`.
    fn counted<'c, T, E>(
        calls: &'c Cell<usize>,
        f: impl Fn(&[u8]) -> Result<T, E> + Copy + 'c,
    ) -> impl Fn(&[u8]) -> Result<T, E> + Copy + 'c {
        move |t| {
            calls.set(calls.get() + 1);
            f(t)
        }
    }

    #[test]
    fn recent_reuses_only_the_same_text() {
        let mut r = Recent::<i64>::default();
        let calls = Cell::new(0);
        let parse = counted(&calls, parse_timestamp);
        let a = b"2026-09-01T00:00:00Z";
        let b = b"2026-09-01T00:00:01Z";
        let first = r.parse(a, parse).unwrap();
        assert_eq!(r.parse(a, parse).unwrap(), first);
        // One byte differs, or the text is a prefix: parsed again.
        assert_eq!(r.parse(b, parse).unwrap(), first + 1_000_000);
        assert_eq!(r.parse(&a[..10], parse).unwrap(), first);
        assert_eq!(r.parse(&a[..10], parse).unwrap(), first);
        // An error is returned each time and leaves the kept text as it was.
        assert!(r.parse(b"2026-02-30", parse).is_err());
        assert!(r.parse(b"2026-02-30", parse).is_err());
        assert_eq!(r.parse(&a[..10], parse).unwrap(), first);
        assert_eq!(calls.get(), 5);
    }

    #[test]
    fn texts_in_no_order_are_parsed_about_once() {
        let mut r = Recent::<i32>::default();
        let calls = Cell::new(0);
        let parse = counted(&calls, crate::calendar::parse_date);
        let days: Vec<String> = (1..=30).map(|d| format!("2026-09-{d:02}")).collect();
        for round in 0..3 {
            for k in 0..30 {
                let d = (k * 7 + round) % 30;
                assert_eq!(
                    r.parse(days[d].as_bytes(), parse),
                    crate::calendar::parse_date(days[d].as_bytes())
                );
            }
        }
        // 30 texts in 32 pairs of slots: a few share a pair with two others.
        assert!(calls.get() < 45, "{} parses", calls.get());
    }

    #[test]
    fn a_column_whose_texts_do_not_repeat_stops_keeping_them() {
        let mut r = Recent::<(Decimal, bool)>::default();
        let calls = Cell::new(0);
        let parse = counted(&calls, Decimal::parse);
        for k in 0..TRIAL {
            r.parse(format!("{k}.123456789").as_bytes(), parse).unwrap();
        }
        assert!(r.off);
        // Repeats are parsed again from now on, with the same values.
        let v = r.parse(b"7.123456789", parse).unwrap();
        assert_eq!(r.parse(b"7.123456789", parse).unwrap(), v);
        assert_eq!(calls.get(), TRIAL as usize + 2);
    }

    #[test]
    fn recent_keeps_neither_short_nor_long_texts() {
        let mut r = Recent::<(Decimal, bool)>::default();
        let calls = Cell::new(0);
        let parse = counted(&calls, Decimal::parse);
        let long = b"0.123456789012345678901234567890123";
        for text in [&b"1.5"[..], long, b"1.5", long] {
            r.parse(text, parse).unwrap();
        }
        assert_eq!(calls.get(), 4);
        // The rounding flag comes back with the value.
        let e = b"3.5999999999999998E-06";
        assert!(r.parse(e, parse).unwrap().1);
        assert!(r.parse(e, parse).unwrap().1);
        assert_eq!(calls.get(), 5);
    }
}
